"""Demo corpora, made by code (no hub): NER, text classification and raw text for MLM.

The NER corpus is synthetic English news-like text with eight entity types in the ``original``
family (PERSON, CITY, COUNTRY, ORGANIZATION, COMPANY, PRODUCT, EVENT, NATIONALITY) that the
``simple`` family maps to PER/LOC/ORG/MISC (``mapping-simple.tsv``). It is built so that casing
matters, as in seed 000: entities are capitalised, every sentence starts with a capital, and many
lowercase common nouns are homographs of entities (an apple / Apple, a turkey / Turkey, the bill /
Bill). A cased model that learns "capitalised = entity" fails on lower-cased text; only context
tells ``apple`` the fruit from ``apple`` the company. Dev and test use some names that never occur
in train.

Everything is generated from a fixed seed and written once into the cache
(``$KFTUNE_HOME/cache/demo/<name>-v1``), atomically, so concurrent trial processes can share it.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from kftune.data.conll import write_conll
from kftune.data.formats import write_csv
from kftune.data.types import TextExample, TokenExample
from kftune.errors import UserError
from kftune.paths import build_once, cache_dir

VERSION = "v1"
SIZES = {"train": 3000, "dev": 500, "test": 500}
SEED = 13

ENTITIES: dict[str, list[str]] = {
    "PERSON": [
        "Angela Merkel",
        "Bill Gates",
        "Rose Tyler",
        "Mark Rutte",
        "Jordan Peele",
        "Grace Hopper",
        "Will Smith",
        "Victoria Beckham",
        "Hope Solo",
        "Joe Biden",
        "Emmanuel Macron",
        "Maria Silva",
        "John Smith",
        "Anna Kowalski",
        "Pedro Alvarez",
        "Lena Fischer",
        "Tom Baker",
        "Sophie Martin",
        "Olga Petrova",
        "Kenji Sato",
        "Amara Okafor",
        "Lucas Moreau",
        "Priya Sharma",
        "Daniel Cohen",
        "Fatima Zahra",
        "Marco Rossi",
        "Ingrid Berg",
        "Chen Wei",
        "Rose",
        "Bill",
        "Mark",
        "Grace",
        "Will",
        "Hope",
        "Jordan",
        "Victoria",
        "Amber Heard",
        "Frank Ocean",
        "Robin Wright",
        "Dawn French",
        "Sky Brown",
        "Summer Glau",
        "Rich Hall",
        "Joy Reid",
    ],
    "CITY": [
        "Berlin",
        "Paris",
        "New York",
        "Los Angeles",
        "Tokyo",
        "Ljubljana",
        "Zagreb",
        "Victoria",
        "Reading",
        "Nice",
        "Bath",
        "Mobile",
        "Split",
        "Buffalo",
        "Phoenix",
        "Orange",
        "Cairo",
        "Lagos",
        "Lima",
        "Oslo",
        "Vienna",
        "Prague",
        "San Francisco",
        "Hong Kong",
        "Rio de Janeiro",
        "Cape Town",
        "Mumbai",
        "Seoul",
        "Sydney",
        "Toronto",
    ],
    "COUNTRY": [
        "Germany",
        "France",
        "Turkey",
        "China",
        "Jordan",
        "Chad",
        "Georgia",
        "Japan",
        "Croatia",
        "Slovenia",
        "Brazil",
        "Nigeria",
        "Peru",
        "Norway",
        "Austria",
        "Kenya",
        "India",
        "Canada",
        "Australia",
        "United States",
        "South Africa",
        "New Zealand",
        "United Kingdom",
        "Mexico",
        "Egypt",
    ],
    "ORGANIZATION": [
        "United Nations",
        "European Union",
        "World Health Organization",
        "Red Cross",
        "NATO",
        "UNESCO",
        "Federal Reserve",
        "Supreme Court",
        "Green Party",
        "Labour Party",
        "World Bank",
        "Interpol",
        "Amnesty International",
        "Greenpeace",
        "University of Oxford",
        "Harvard University",
        "BBC",
        "FIFA",
    ],
    "COMPANY": [
        "Apple",
        "Amazon",
        "Shell",
        "Target",
        "Orange",
        "Jaguar",
        "Puma",
        "Mango",
        "Oracle",
        "Corona",
        "Subway",
        "Google",
        "Microsoft",
        "Siemens",
        "Volkswagen",
        "Toyota",
        "Samsung",
        "Nokia",
        "Philips",
        "Unilever",
        "Goldman Sachs",
        "General Motors",
        "Deutsche Bank",
        "Royal Dutch Shell",
    ],
    "PRODUCT": [
        "iPhone",
        "Galaxy S9",
        "Windows",
        "PlayStation",
        "Model S",
        "Kindle",
        "Golf",
        "Corolla",
        "Walkman",
        "Xbox",
        "Android",
        "Photoshop",
        "Excel",
        "Prius",
        "Beetle",
        "Pixel",
        "ThinkPad",
        "Surface",
    ],
    "EVENT": [
        "World Cup",
        "Olympic Games",
        "Paris Marathon",
        "Climate Summit",
        "Cannes Film Festival",
        "Eurovision",
        "Tour de France",
        "Super Bowl",
        "Oktoberfest",
        "Wimbledon",
        "Champions League",
        "Brexit",
    ],
    "NATIONALITY": [
        "German",
        "French",
        "Turkish",
        "Chinese",
        "Japanese",
        "Croatian",
        "Slovenian",
        "Brazilian",
        "Nigerian",
        "Norwegian",
        "Austrian",
        "Kenyan",
        "Indian",
        "Canadian",
        "Australian",
        "American",
        "Mexican",
        "Egyptian",
    ],
}

# Lowercase common nouns that are homographs of entities: they are never entities.
HOMOGRAPHS = [
    "apple",
    "turkey",
    "china",
    "bill",
    "rose",
    "mark",
    "grace",
    "will",
    "hope",
    "jaguar",
    "shell",
    "target",
    "orange",
    "puma",
    "mango",
    "oracle",
    "corona",
    "subway",
    "golf",
    "beetle",
    "pixel",
    "surface",
    "excel",
    "windows",
    "reading",
    "nice",
    "bath",
    "mobile",
    "split",
    "buffalo",
    "phoenix",
    "amazon",
    "victoria",
    "summer",
    "frank",
    "joy",
    "dawn",
    "sky",
    "amber",
    "robin",
    "rich",
]

# Templates: {TYPE} is an entity slot, {hom} a lowercase homograph, {num} a number.
NER_TEMPLATES = [
    "{PERSON} met {PERSON} in {CITY} on Monday .",
    "The {NATIONALITY} government said {COMPANY} will invest in {COUNTRY} .",
    "Shares of {COMPANY} rose after the launch of the new {PRODUCT} .",
    "{PERSON} , chief executive of {COMPANY} , spoke at the {EVENT} in {CITY} .",
    "Officials from the {ORGANIZATION} arrived in {COUNTRY} late on Tuesday .",
    "She bought a {hom} at the market in {CITY} .",
    "He paid the {hom} and left the {hom} on the table .",
    "Yesterday {PERSON} said the {hom} was too expensive .",
    "The {EVENT} will be held in {CITY} , {COUNTRY} , next year .",
    "{COMPANY} sold {num} million units of the {PRODUCT} last quarter .",
    "A {hom} was found near the station in {CITY} .",
    "Fans of the {EVENT} travelled from {COUNTRY} and {COUNTRY} .",
    "The {ORGANIZATION} criticised {COMPANY} over its plans in {CITY} .",
    "{PERSON} told reporters that the {ORGANIZATION} had no {hom} for such a plan .",
    "Our {hom} is in the kitchen , said {PERSON} .",
    "After the {EVENT} , {PERSON} returned to {CITY} with a {hom} .",
    "{NATIONALITY} fans celebrated in {CITY} after the {EVENT} final .",
    "The price of a {hom} doubled in {COUNTRY} this year .",
    "{COMPANY} and {COMPANY} announced a merger worth {num} billion dollars .",
    "Analysts expect the {PRODUCT} to outsell the {PRODUCT} in {COUNTRY} .",
    "The {ORGANIZATION} report was published by {PERSON} on Friday .",
    "Nobody knew where the {hom} came from .",
    "Police in {CITY} arrested {num} people after the {EVENT} .",
    "The {NATIONALITY} minister visited {ORGANIZATION} headquarters in {CITY} .",
    "{PERSON} bought an {PRODUCT} from {COMPANY} in {CITY} .",
    "There was a {hom} and a {hom} in the garden .",
    "Every {hom} in the shop cost {num} euros .",
    "{COUNTRY} and {COUNTRY} signed a trade deal at the {ORGANIZATION} .",
    "Workers at the {COMPANY} plant in {CITY} went on strike .",
    "In {COUNTRY} , the {hom} season starts in May .",
    "{PERSON} and {PERSON} won gold at the {EVENT} .",
    "The {hom} rolled off the table .",
    "Reports say {COMPANY} will cut {num} jobs in {COUNTRY} .",
    "Students at {ORGANIZATION} protested against the {hom} .",
    "Later that day {PERSON} flew from {CITY} to {CITY} .",
    "The new {PRODUCT} runs faster than any {hom} , joked {PERSON} .",
]

MAPPING_SIMPLE = {
    "PERSON": "PER",
    "CITY": "LOC",
    "COUNTRY": "LOC",
    "ORGANIZATION": "ORG",
    "COMPANY": "ORG",
    "PRODUCT": "MISC",
    "EVENT": "MISC",
    "NATIONALITY": "MISC",
}

CLS_LABELS = ("negative", "neutral", "positive")
CLS_OPENERS = [
    "I ordered the {item}",
    "We tried the {item}",
    "My brother bought the {item}",
    "The {item} arrived",
    "After a week with the {item}",
    "Got the {item} yesterday",
    "The {item} from this shop",
]
CLS_ITEMS = [
    "phone",
    "laptop",
    "coffee machine",
    "blender",
    "headphones",
    "chair",
    "jacket",
    "printer",
    "camera",
    "vacuum cleaner",
    "backpack",
    "kettle",
    "monitor",
    "keyboard",
    "lamp",
    "tent",
    "bike",
    "watch",
]
CLS_CLAUSES = {
    "positive": [
        "and it works perfectly",
        "and I love it",
        "it is excellent value",
        "the quality is great",
        "it exceeded my expectations",
        "I would happily buy it again",
        "it is fast and reliable",
    ],
    "negative": [
        "and it broke after two days",
        "it is a waste of money",
        "the quality is awful",
        "it stopped working",
        "I want a refund",
        "it is slow and noisy",
        "support never answered",
    ],
    "neutral": [
        "it does what it says",
        "it is an average product",
        "nothing special about it",
        "it is okay for the price",
        "it arrived on time",
        "it looks like the picture",
        "no strong opinion",
    ],
}


def _entity_pools(rng: random.Random) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Train sees ~80% of each type's names; dev/test draw from all of them (some are unseen)."""
    train, full = {}, {}
    for typ, names in ENTITIES.items():
        shuffled = names[:]
        rng.shuffle(shuffled)
        cut = max(1, int(len(shuffled) * 0.8))
        train[typ], full[typ] = shuffled[:cut], shuffled
    return train, full


def _ner_sentence(rng: random.Random, pool: dict[str, list[str]], doc: int) -> TokenExample:
    template = rng.choice(NER_TEMPLATES)
    tokens: list[str] = []
    tags: list[str] = []
    for piece in template.split():
        if piece.startswith("{") and piece.endswith("}"):
            slot = piece[1:-1]
            if slot == "hom":
                tokens.append(rng.choice(HOMOGRAPHS))
                tags.append("O")
            elif slot == "num":
                tokens.append(str(rng.choice([2, 3, 5, 12, 40, 150, 800])))
                tags.append("O")
            else:
                words = rng.choice(pool[slot]).split()
                tokens += words
                tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(words) - 1)
        else:
            tokens.append(piece)
            tags.append("O")
    # an/a agreement is not worth a grammar engine; sentence-initial capital is: every sentence starts
    # with a capital letter, entity or not.
    tokens[0] = tokens[0][:1].upper() + tokens[0][1:]
    return TokenExample(tokens, tags, doc)


def make_ner(seed: int = SEED) -> dict[str, list[TokenExample]]:
    rng = random.Random(seed)
    train_pool, full_pool = _entity_pools(rng)
    splits: dict[str, list[TokenExample]] = {}
    doc = 0
    for split, size in SIZES.items():
        pool = train_pool if split == "train" else full_pool
        out: list[TokenExample] = []
        while len(out) < size:
            doc += 1
            for _ in range(min(rng.randint(6, 14), size - len(out))):
                out.append(_ner_sentence(rng, pool, doc))
        splits[split] = out
    return splits


def make_textcls(seed: int = SEED, noise: float = 0.08) -> dict[str, list[TextExample]]:
    """Product reviews, three classes; the label follows the last clause; ~8% label noise."""
    rng = random.Random(seed + 1)
    sizes = {"train": 2000, "dev": 400, "test": 400}
    splits = {}
    doc = 0
    for split, size in sizes.items():
        out = []
        for _ in range(size):
            doc += 1
            label = rng.choice(CLS_LABELS)
            opener = rng.choice(CLS_OPENERS).format(item=rng.choice(CLS_ITEMS))
            if rng.random() < 0.35:  # a contrasting first clause makes bag-of-words harder
                other = rng.choice([lab for lab in CLS_LABELS if lab != label])
                text = f"{opener} , {rng.choice(CLS_CLAUSES[other])} at first , but now {rng.choice(CLS_CLAUSES[label])} ."
            else:
                text = f"{opener} , {rng.choice(CLS_CLAUSES[label])} ."
            if rng.random() < noise:
                label = rng.choice(CLS_LABELS)
            out.append(TextExample(text, label, doc))
        splits[split] = out
    return splits


def make_mlm(seed: int = SEED) -> dict[str, list[TextExample]]:
    ner = make_ner(seed + 2)
    cls = make_textcls(seed + 3)
    rng = random.Random(seed + 4)
    out = {}
    for split in ("train", "dev"):
        lines = [" ".join(ex.tokens) for ex in ner[split]] + [ex.text for ex in cls[split]]
        rng.shuffle(lines)
        out[split] = [TextExample(line, "", i) for i, line in enumerate(lines)]
    return out


def _write(name: str, target: Path) -> None:
    if name == "ner":
        for split, exs in make_ner().items():
            write_conll(target / f"{split}.conll", exs)
        lines = ["# original (fine) entity type -> simple family type (seed 000's 'simple tags')"]
        lines += [f"{k}\t{v}" for k, v in MAPPING_SIMPLE.items()]
        (target / "mapping-simple.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif name == "textcls":
        for split, exs in make_textcls().items():
            write_csv(target / f"{split}.csv", exs)
    elif name == "mlm":
        for split, exs in make_mlm().items():
            (target / f"{split}.txt").write_text("\n".join(ex.text for ex in exs) + "\n", encoding="utf-8")
    (target / "README.md").write_text(
        f"kftune demo corpus '{name}' ({VERSION}), generated by kftune.data.demo; safe to delete.\n",
        encoding="utf-8",
    )


DEMOS = {"ner": "ner", "textcls": "seqcls", "mlm": "mlm"}


def demo_path(name: str, task: str | None = None) -> Path:
    """Directory of a demo corpus, generated on first use (atomic: temp dir + rename)."""
    if name not in DEMOS:
        raise UserError(
            f"unknown demo corpus demo:{name}: choose one of {', '.join('demo:' + d for d in DEMOS)}"
        )
    if task is not None and DEMOS[name] != task:
        raise UserError(f"demo:{name} is a corpus for --task {DEMOS[name]}, not {task}")
    return build_once(cache_dir("demo") / f"{name}-{VERSION}", lambda tmp: _write(name, tmp))


def export_demo(name: str, out_dir: str | Path) -> Path:
    """Copy a demo corpus to a directory of the user's choice."""
    out = Path(out_dir)
    shutil.copytree(demo_path(name), out, dirs_exist_ok=True)
    return out
