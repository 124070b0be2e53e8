#!/bin/bash
# GPU smoke test of the trainer's CUDA path (bf16/fp16/fp32, OOM and NaN hooks, resume) and the
# throughput benchmark on a GPU; run from the repository root on a machine with a CUDA GPU:
#   OUT=/tmp/gpu bash bench/gpu_smoke.sh
mkdir -p "${OUT:=/tmp/kftune-gpu}"
export PYTHONPATH=$PWD/src KFTUNE_HOME=/tmp/kh HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch,transformers;print(torch.__version__,transformers.__version__,torch.cuda.get_device_name(0))"
T="python3 -m kftune train --task ner --data demo:ner --model tiny --learning-rate 1e-3 --tracking off"
run() { name=$1; shift; /usr/bin/time -f "$name wall %e s" "$@" > $OUT/$name.out 2> $OUT/$name.err; echo "$name rc=$?"; cat $OUT/$name.out; grep -E "samples/s|out of memory|stopped|Error|error" $OUT/$name.err | tail -4; tail -1 $OUT/$name.err; }
run g1_bf16 $T --output-dir /tmp/g1 --num-epochs 3
run g2_fp16 $T --output-dir /tmp/g2 --num-epochs 1 --precision fp16
run g3_fp32 $T --output-dir /tmp/g3 --num-epochs 1 --precision fp32
KFTUNE_TEST_OOM_AT_STEP=3 run g4_oom $T --output-dir /tmp/g4 --num-epochs 1
KFTUNE_TEST_NAN_AT_STEP=40 run g5_nan $T --output-dir /tmp/g5 --num-epochs 2
run g6_resume $T --output-dir /tmp/g1 --num-epochs 4 --resume-from /tmp/g1
python3 -c "import json;m=json.load(open('/tmp/g1/metrics.json'));print(m['status'],m['device'],m['precision'],m['batch'],[round(h['eval_f1'],4) for h in m['history']])"
python3 -c "import json;m=json.load(open('/tmp/g5/metrics.json'));print(m['status'],m['details'],m['reason'])"
python3 bench/throughput.py --device cuda --precision bf16 --rounds 2 2>$OUT/b1.err
python3 bench/throughput.py --device cuda --model base-random --precision bf16 --rounds 2 2>$OUT/b2.err
python3 bench/throughput.py --device cuda --model base-random --precision fp32 --rounds 1 2>$OUT/b3.err
tail -3 $OUT/b3.err
