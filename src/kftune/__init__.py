"""kftune: tune, retrain, evaluate and publish transformer models on Katib/KFP or a laptop."""

__version__ = "0.1.0"
