# t2igan — every user-facing command. `make help` lists them.
# The first command you run creates .venv and installs everything (idempotent).

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
GPU     ?= 0

DATASET ?= shapes
PROFILE ?= course
RUN_DIR ?=
ARGS    ?=
TEXT    ?= a small red circle in the top left
N       ?= 8
SEED    ?= 0
REAL    ?=
FAKE    ?=
EXTRACTOR ?=
WEIGHTS ?=

VARIANT ?=
CHAPTER_1 := ch1_gan_int_cls
CHAPTER_2 := ch2_stackgan
CHAPTER_3 := ch3_attngan
CHAPTER_4 := ch4_dfgan_ratgan
CHAPTER_5 := ch5_vlmgan
V4 = --variant=$(or $(VARIANT),ratgan)
V5 = --variant=$(or $(VARIANT),dfgan)
# sample/eval: a run is used as it was trained; VARIANT, when given, must match it (checked by the chapter)
VS = $(if $(VARIANT),--variant=$(VARIANT))
# TEXT reaches the program verbatim: make's $ and the shell's quotes and $ are not expanded
QUOTED_TEXT = '$(subst ','\'',$(value TEXT))'

SCORE_RUN ?=
BENCHMARK_PROFILE ?= paper
ATTN    ?= 0

# A variable given on the command line that no target reads (a typo such as TXET=) is an error, not a default.
KNOWN_VARIABLES = PYTHON VENV GPU DATASET PROFILE RUN_DIR ARGS TEXT N SEED REAL FAKE EXTRACTOR WEIGHTS VARIANT \
                  SCORE_RUN BENCHMARK_PROFILE ATTN CHAPTER TASKS OUT STUDENT RESULTS LOGDIR GENERATOR TEXT_ENCODER \
                  IMAGE_ENCODER DAMSM_DIR TEST_WORKERS CHECKPOINT DISCRIMINATOR BENCHMARK_STEPS
UNKNOWN_VARIABLES := $(filter-out $(KNOWN_VARIABLES),$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(strip $(UNKNOWN_VARIABLES)),)
$(error $(UNKNOWN_VARIABLES): not a variable of this Makefile (a typo?); the variables are $(KNOWN_VARIABLES))
endif

COMMON = --dataset=$(DATASET) --profile=$(PROFILE) $(if $(RUN_DIR),--run_dir=$(RUN_DIR))

.PHONY: help install test test-slow test-all tensorboard clean eval benchmark \
        chapter1-pretrain chapter1-train chapter1-sample chapter1-eval chapter1-check \
        chapter2-pretrain chapter2-train chapter2-sample chapter2-eval chapter2-check \
        chapter3-pretrain chapter3-train chapter3-sample chapter3-eval chapter3-check \
        chapter4-pretrain chapter4-train chapter4-sample chapter4-eval chapter4-check chapter4-benchmark chapter4-import \
        chapter5-pretrain chapter5-train chapter5-sample chapter5-eval chapter5-vlms chapter5-check

help:
	@echo "make chapter1-train   [DATASET=shapes|shapes-pairs|birds|flowers|coco|<folder>] [PROFILE=course|smoke|paper] [RUN_DIR=...] [ARGS=...]"
	@echo "make chapter1-pretrain  (text encoder only; chapter1-train runs it when needed)"
	@echo "make chapter1-sample  TEXT=\"a small red circle in the top left\" [N=8] [SEED=0]"
	@echo "make chapter1-eval    (oracle accuracy + oracle FID on shapes)"
	@echo "make chapter1-check   (this chapter's tests)"
	@echo "make chapter2-train   [VARIANT=v2|v1] and chapter2-{pretrain,sample,eval,check}: StackGAN++ / StackGAN-v1"
	@echo "make chapter2-import  DATASET=birds PROFILE=paper CHECKPOINT=netG_210000.pth [ARGS=\"--embeddings=folder\"]  (StackGAN++'s release and Reed's embeddings, for sample/eval)"
	@echo "make chapter3-train   and chapter3-{pretrain,sample,eval,check}: DAMSM + AttnGAN; chapter3-sample ATTN=1 adds attention maps"
	@echo "make chapter3-import  DATASET=birds PROFILE=paper GENERATOR=bird_AttnGAN2.pth TEXT_ENCODER=text_encoder200.pth IMAGE_ENCODER=image_encoder200.pth  (the official AttnGAN, for sample/eval)"
	@echo "make damsm-import     DATASET=birds TEXT_ENCODER=… IMAGE_ENCODER=… DAMSM_DIR=folder  (the official DAMSM, for ARGS=\"--set damsm_dir=folder\" in chapters 3-5)"
	@echo "make chapter4-train   [VARIANT=ratgan|dfgan] and chapter4-{pretrain,sample,eval,check}: RAT-GAN / DF-GAN on DAMSM"
	@echo "make chapter5-train   [VARIANT=dfgan|attngan] and chapter5-{pretrain,sample,eval,check}: VLMGAN (VLM losses on AttnGAN / DF-GAN)"
	@echo "make chapter5-vlms SCORE_RUN=runs/ch4-...  (VLMS, oracle, R-precision of a chapter 3/4 run under this run's VLM)"
	@echo "make benchmark        [PROFILE=course] [BENCHMARK_STEPS=30]  (every chapter's step: FLOPs, ms/step, bare tf.function loop, CPU peak; XLA where the profile compiles: ARGS=--jit_compile / --nojit_compile)"
	@echo "make chapter4-benchmark [VARIANT=...] [BENCHMARK_PROFILE=paper]  (seconds per training step at 256², batch 8;"
	@echo "                        ARGS=--benchmark_pytorch: the official PyTorch iteration beside it, interleaved, and the ratio)"
	@echo "make chapter4-import  VARIANT=dfgan DATASET=birds PROFILE=paper CHECKPOINT=state_epoch_NNN.pth ARGS=\"--set damsm_dir=folder\"  (DF-GAN's release, for sample/eval)"
	@echo "make chapter4-import  VARIANT=ratgan DATASET=birds PROFILE=paper CHECKPOINT=netG_NNN.pth [DISCRIMINATOR=netD_NNN.pth] ARGS=\"--set damsm_dir=folder\"  (RAT-GAN's)"
	@echo "make eval REAL=folder|stats.npz FAKE=folder [EXTRACTOR=pytorch-fid|torchvision|keras-imagenet|oracle] [WEIGHTS=file]  (FID + IS, protocol card)"
	@echo "make assignment CHAPTER=N OUT=folder [TASKS=a,b]  (a student copy: the chosen tasks stubbed out; docs/teaching.md)"
	@echo "make grade CHAPTER=N STUDENT=folder|file [RESULTS=results.json]  (the autograder; last line: score: X / Y)"
	@echo "make assignment-tasks CHAPTER=N  (the tasks, their checks and points)   make assignment-mutations CHAPTER=N  (plant every listed mistake, grade it)"
	@echo "make tensorboard      [RUN_DIR=...|LOGDIR=...]  (TensorBoard on one run, or on runs/)"
	@echo "make test             (every test but the slow end-to-end ones: ≤ 10 min on 2 CPU cores)"
	@echo "make test-slow        (the slow ones: birds on 2 replicas, multi-worker, killed runs, benchmarks)   make test-all  (both: CI)"
	@echo "make install [GPU=1]  (GPU=1: tensorflow[and-cuda])"

# ---------------------------------------------------------------- environment
$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "t2igan needs Python >= 3.11; set PYTHON=python3.11 (or newer).")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

install: $(VENV)/.installed
ifeq ($(GPU),1)
	$(PY) -m pip install --quiet "tensorflow[and-cuda]==2.21.*"
endif

# ---------------------------------------------------------------- step benchmark
# Every chapter's default variant(s), built as `train` builds them, with `--benchmark_steps`: t2igan/training/
# benchmark.py. The encoders are pretrained for one step only (the GAN step's arithmetic does not depend on
# their weights); the run folders under runs/benchmark are the benchmark's own and are replaced each time.
BENCHMARK_STEPS ?= 30
BENCHMARK = train --dataset=$(DATASET) --profile=$(PROFILE) --time_steps=$(BENCHMARK_STEPS) --distribution=default
ONE_STEP_TEXT_ENCODER = --set pretrain_epochs=1 --set pretrain_steps_per_epoch=1
ONE_STEP_DAMSM = --set damsm_epochs=1 --set damsm_steps_per_epoch=1
BENCHMARK_DIR = runs/benchmark/$(DATASET)-$(PROFILE)
benchmark: install
	rm -rf $(BENCHMARK_DIR)
	$(PY) -m chapters.$(CHAPTER_1) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch1 $(ONE_STEP_TEXT_ENCODER) $(ARGS)
	$(PY) -m chapters.$(CHAPTER_2) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch2-v2 --variant=v2 $(ONE_STEP_TEXT_ENCODER) $(ARGS)
	$(PY) -m chapters.$(CHAPTER_3) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch3 $(ONE_STEP_DAMSM) $(ARGS)
	$(PY) -m chapters.$(CHAPTER_4) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch4-ratgan --variant=ratgan $(ONE_STEP_DAMSM) $(ARGS)
	$(PY) -m chapters.$(CHAPTER_4) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch4-dfgan --variant=dfgan $(ONE_STEP_DAMSM) $(ARGS)
	$(PY) -m chapters.$(CHAPTER_5) $(BENCHMARK) --run_dir=$(BENCHMARK_DIR)/ch5-dfgan --variant=dfgan $(ONE_STEP_DAMSM) \
	    --set vlm_epochs=1 --set vlm_steps_per_epoch=1 $(ARGS)
	$(PY) -m t2igan.training.benchmark $(BENCHMARK_DIR)

# ---------------------------------------------------------------- chapter 1: GAN-INT-CLS
chapter1-pretrain: install
	$(PY) -m chapters.$(CHAPTER_1) pretrain $(COMMON) $(ARGS)

chapter1-train: install
	$(PY) -m chapters.$(CHAPTER_1) train $(COMMON) $(ARGS)

chapter1-sample: install
	$(PY) -m chapters.$(CHAPTER_1) sample $(COMMON) --text=$(QUOTED_TEXT) --n=$(N) --sample_seed=$(SEED) $(ARGS)

chapter1-eval: install
	$(PY) -m chapters.$(CHAPTER_1) eval $(COMMON) --sample_seed=$(SEED) $(ARGS)

chapter1-check: install
	$(PY) -m pytest -q tests/test_chapter01_model.py tests/test_chapter01.py

# ---------------------------------------------------------------- chapter 2: StackGAN++ / StackGAN-v1
chapter2-pretrain: install
	$(PY) -m chapters.$(CHAPTER_2) pretrain --variant=$(or $(VARIANT),v2) $(COMMON) $(ARGS)
chapter2-train: install
	$(PY) -m chapters.$(CHAPTER_2) train --variant=$(or $(VARIANT),v2) $(COMMON) $(ARGS)
chapter2-sample: install
	$(PY) -m chapters.$(CHAPTER_2) sample $(VS) $(COMMON) --text=$(QUOTED_TEXT) --n=$(N) --sample_seed=$(SEED) $(ARGS)
chapter2-eval: install
	$(PY) -m chapters.$(CHAPTER_2) eval $(VS) $(COMMON) --sample_seed=$(SEED) $(ARGS)
chapter2-check: install
	$(PY) -m pytest -q tests/test_chapter02_model.py tests/test_chapter02.py
.PHONY: chapter2-import
chapter2-import: install
	$(PY) -m chapters.$(CHAPTER_2) import --variant=$(or $(VARIANT),v2) $(COMMON) --checkpoint="$(CHECKPOINT)" $(ARGS)

# ---------------------------------------------------------------- chapter 3: DAMSM + AttnGAN
chapter3-pretrain: install
	$(PY) -m chapters.$(CHAPTER_3) pretrain $(COMMON) $(ARGS)
chapter3-train: install
	$(PY) -m chapters.$(CHAPTER_3) train $(COMMON) $(ARGS)
chapter3-sample: install
	$(PY) -m chapters.$(CHAPTER_3) sample $(COMMON) --text=$(QUOTED_TEXT) --n=$(N) --sample_seed=$(SEED) $(if $(filter 1,$(ATTN)),--attention) $(ARGS)
chapter3-eval: install
	$(PY) -m chapters.$(CHAPTER_3) eval $(COMMON) --sample_seed=$(SEED) $(ARGS)
chapter3-check: install
	$(PY) -m pytest -q tests/test_chapter03_model.py tests/test_chapter03.py tests/test_official.py
.PHONY: chapter3-import damsm-import
chapter3-import: install
	$(PY) -m chapters.$(CHAPTER_3) import $(COMMON) --generator="$(GENERATOR)" $(if $(TEXT_ENCODER),--text_encoder="$(TEXT_ENCODER)") $(if $(IMAGE_ENCODER),--image_encoder="$(IMAGE_ENCODER)") $(ARGS)
damsm-import: install
	$(PY) -m chapters.$(CHAPTER_3).official damsm --dataset=$(DATASET) --text_encoder="$(TEXT_ENCODER)" --image_encoder="$(IMAGE_ENCODER)" --out="$(DAMSM_DIR)" $(ARGS)

# ---------------------------------------------------------------- chapter 4: DF-GAN + RAT-GAN
chapter4-pretrain: install
	$(PY) -m chapters.$(CHAPTER_4) pretrain $(V4) $(COMMON) $(ARGS)
chapter4-train: install
	$(PY) -m chapters.$(CHAPTER_4) train $(V4) $(COMMON) $(ARGS)
chapter4-sample: install
	$(PY) -m chapters.$(CHAPTER_4) sample $(VS) $(COMMON) --text=$(QUOTED_TEXT) --n=$(N) --sample_seed=$(SEED) $(if $(filter 1,$(ATTN)),--attention) $(ARGS)
chapter4-eval: install
	$(PY) -m chapters.$(CHAPTER_4) eval $(VS) $(COMMON) --sample_seed=$(SEED) $(ARGS)
chapter4-benchmark: install
	$(PY) -m chapters.$(CHAPTER_4) benchmark $(V4) --profile=$(BENCHMARK_PROFILE) $(ARGS)
chapter4-import: install
	$(PY) -m chapters.$(CHAPTER_4) import $(V4) $(COMMON) --checkpoint="$(CHECKPOINT)" $(if $(DISCRIMINATOR),--discriminator_checkpoint="$(DISCRIMINATOR)") $(ARGS)
chapter4-check: install
	$(PY) -m pytest -q tests/test_chapter04_model.py tests/test_chapter04.py

# ---------------------------------------------------------------- chapter 5: VLMGAN
chapter5-pretrain: install
	$(PY) -m chapters.$(CHAPTER_5) pretrain $(V5) $(COMMON) $(ARGS)
chapter5-train: install
	$(PY) -m chapters.$(CHAPTER_5) train $(V5) $(COMMON) $(ARGS)
chapter5-sample: install
	$(PY) -m chapters.$(CHAPTER_5) sample $(VS) $(COMMON) --text=$(QUOTED_TEXT) --n=$(N) --sample_seed=$(SEED) $(ARGS)
chapter5-eval: install
	$(PY) -m chapters.$(CHAPTER_5) eval $(VS) $(COMMON) --sample_seed=$(SEED) $(ARGS)
chapter5-vlms: install
	$(PY) -m chapters.$(CHAPTER_5) vlms $(V5) $(COMMON) --score_run="$(SCORE_RUN)" --sample_seed=$(SEED) $(ARGS)
chapter5-check: install
	$(PY) -m pytest -q tests/test_chapter05_model.py tests/test_chapter05.py

# ---------------------------------------------------------------- course assignments (docs/teaching.md)
# The grader (chapters/chN_name/tasks.py) stays with the instructor: a student copy has none.
CHAPTER ?=
TASKS   ?=
OUT     ?=
STUDENT ?=
RESULTS ?=
TASKS_MODULE = chapters.$(CHAPTER_$(CHAPTER)).tasks
define need_chapter
	@test -n "$(CHAPTER_$(CHAPTER))" || { echo "error: CHAPTER=$(CHAPTER) is not a chapter; set CHAPTER=1 … 5 (e.g. make $@ CHAPTER=4 …)." >&2; exit 2; }
	@test -f "chapters/$(CHAPTER_$(CHAPTER))/tasks.py" || { echo "error: chapters/$(CHAPTER_$(CHAPTER))/tasks.py (the grader) is not here: a student copy has no grader; your instructor grades your copy with make grade." >&2; exit 2; }
endef
.PHONY: assignment grade assignment-tasks assignment-mutations
assignment: install
	$(need_chapter)
	@test -n "$(OUT)" || { echo "error: name the student copy's folder: make assignment CHAPTER=$(CHAPTER) OUT=folder [TASKS=a,b]." >&2; exit 2; }
	$(PY) -m $(TASKS_MODULE) assignment --out="$(OUT)" $(if $(TASKS),--tasks="$(TASKS)")
grade: install
	$(need_chapter)
	@test -n "$(STUDENT)" || { echo "error: name the student's copy or file: make grade CHAPTER=$(CHAPTER) STUDENT=folder [RESULTS=results.json]." >&2; exit 2; }
	$(PY) -m $(TASKS_MODULE) grade --student="$(STUDENT)" $(if $(TASKS),--tasks="$(TASKS)") $(if $(RESULTS),--results="$(RESULTS)")
assignment-tasks: install
	$(need_chapter)
	$(PY) -m $(TASKS_MODULE) list
assignment-mutations: install
	$(need_chapter)
	$(PY) -m $(TASKS_MODULE) mutations $(if $(TASKS),--tasks="$(TASKS)")

# ---------------------------------------------------------------- everything else
# TensorBoard on RUN_DIR's logs when given (LOGDIR=folder for another folder), else on every run in runs/.
tensorboard: install
	$(VENV)/bin/tensorboard --logdir $(or $(LOGDIR),$(RUN_DIR),runs) --samples_per_plugin images=200 --host 127.0.0.1

# FID/IS between two image folders (or a run's eval with RUN_DIR=…); see docs/metrics.md.
eval: install
	$(PY) -m t2igan.evaluate_folders $(if $(RUN_DIR),--run=$(RUN_DIR),--real="$(REAL)" --fake="$(FAKE)") $(if $(EXTRACTOR),--extractor=$(EXTRACTOR)) $(if $(WEIGHTS),--inception_weights="$(WEIGHTS)") $(ARGS)

# Test modules run in parallel processes (pytest-xdist), one module per worker so module
# fixtures (a smoke run shared by several tests) are built once. At least 3 workers: the tests
# spend much of their time in single-threaded start-up and tracing, so 3 keep 2 cores busy.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(max(3, os.cpu_count() or 1))")
# `make test`: every test but the `slow` ones, the everyday suite (9 min 44 s from a fresh clone on a 2-core AVX2-only CPU, 8 min 26 s of it tests; 6 min 32 s to 7 min 46 s, three runs, on a faster AVX-512 one). `make test-slow`: the
# long end-to-end runs (real birds data on 2 replicas, multi-worker clusters, killed and NaN runs, the
# variants beside each chapter's default, the benchmark commands). `make test-all` (CI, .ci/run): both in one session.
PYTEST = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --durations=15
test: install
	$(PYTEST) -m "not slow" tests
test-slow: install
	$(PYTEST) -m slow tests
test-all: install
	$(PYTEST) tests

clean:
	rm -rf runs
