# quiver — PostgreSQL extension serving GNN predictions (PGXS build).
#
#   make                  build quiver.so (and cuda/quiver_cuda.so when nvcc is found)
#   make USE_CUDA=0       CPU-only build
#   make install          install into the server's directories
#   make unit             build and run the cmocka unit tests of src/core and cuda/
#   make installcheck     pg_regress and the TAP tests (test/t/*.pl), quiver preloaded
#   make bench            build test/bench/quiver-bench (engine core alone)
#   make fuzz             build test/fuzz/bin/fuzz_safetensors (clang, libFuzzer;
#                         scripts/fuzz.sh runs it)

EXTENSION = quiver
EXTVERSION = 0.1.0
DATA = sql/quiver--$(EXTVERSION).sql
PGFILEDESC = "quiver - graph neural network inference in PostgreSQL"

# The engine core linked into quiver.so: src/core/*.c.  src/core/testing/
# holds core code that only the unit tests and the benchmark use (Chung-Lu
# generator, .npy files, CSR datasets); it is never linked into quiver.so,
# and its headers are not on the extension's include path.
CORE_SRCS = $(sort $(wildcard src/core/*.c))
TEST_CORE_SRCS = $(sort $(wildcard src/core/testing/*.c))
TEST_CORE_HDRS = $(wildcard src/core/*.h src/core/testing/*.h)
GLUE_SRCS = $(sort $(wildcard src/*.c))
CORE_OBJS = $(CORE_SRCS:.c=.o)
MODULE_big = quiver
OBJS = $(GLUE_SRCS:.c=.o) $(CORE_OBJS)

CORE_LIBS = -ljansson -lopenblas -lhwloc -lpthread -ldl -lm
SHLIB_LINK = $(CORE_LIBS)
PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/core -I$(srcdir)/cuda
PG_CFLAGS = -std=gnu11 -Wall -Wno-declaration-after-statement

REGRESS = $(patsubst sql/%.sql,%,$(filter-out sql/quiver--%,$(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=$(CURDIR)/tmp_regress --temp-config=$(srcdir)/test/quiver_test.conf
TAP_TESTS = 1
PROVE_TESTS = $(sort $(wildcard test/t/*.pl))

EXTRA_CLEAN = test/bench/quiver-bench test/unit/bin test/fuzz/bin tmp_regress tmp_check cuda/*.o cuda/quiver_cuda.so results regression.diffs regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies (Debian's server is built without
# --enable-depend): every object depends on every header of the project.
$(OBJS): $(wildcard src/*.h src/core/*.h cuda/*.h)

# ---- CUDA -------------------------------------------------------------------
# cuda/quiver_cuda.so is built when nvcc is found (or USE_CUDA=1); USE_CUDA=0
# gives a complete CPU-only build.  SASS for sm_80 (A100) and sm_90 (H100,
# H200), PTX for compute_90 so newer GPUs JIT it.
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
ifeq ($(NVCC),)
USE_CUDA ?= 0
else
USE_CUDA ?= 1
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_SRCS = $(sort $(wildcard cuda/*.cu))
CUDA_OBJS = $(CUDA_SRCS:.cu=.o)
CUDA_GENCODE ?= -gencode arch=compute_80,code=sm_80 \
	-gencode arch=compute_90,code=[sm_90,compute_90]
NVCC_FLAGS ?= -O3 -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall \
	-I$(srcdir)/src/core -I$(srcdir)/cuda $(CUDA_GENCODE)
# Shared cudart (one runtime with cuBLAS); --no-undefined: the module must not
# lean on symbols of quiver.so or of the process that loads it.  cuBLAS is not
# linked: cuda/blas.cu dlopens libcublas.so.<major> (through this runpath) at
# the first lane_create, so loading the module stays cheap and driver-free.
NVCC_LDFLAGS = -shared -cudart shared -L$(CUDA_HOME)/lib64 -ldl -lpthread \
	-Xlinker --no-undefined -Xlinker -rpath -Xlinker $(CUDA_HOME)/lib64

ifeq ($(USE_CUDA),1)
ifeq ($(NVCC),)
$(error USE_CUDA=1 but nvcc was not found: set NVCC=/path/to/nvcc or USE_CUDA=0)
endif
all: cuda/quiver_cuda.so
install: install-cuda
unit: cuda/quiver_cuda.so
endif

cuda/%.o: cuda/%.cu $(wildcard cuda/*.h cuda/*.cuh) src/core/qv_error.h \
		src/core/graph.h src/core/model.h src/core/sample_hash.h
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

# The module reports errors with the core's qv_error(): its own hidden copy
# of src/core/qv_error.c (plain C, no other core code).
cuda/qv_error_core.o: src/core/qv_error.c src/core/qv_error.h
	$(CC) -std=gnu11 -O2 -g -Wall -fPIC -fvisibility=hidden -Isrc/core -c $< -o $@

# The GPU module is a separate library that only the engine process dlopens:
# the postmaster and backends never load CUDA.
cuda/quiver_cuda.so: $(CUDA_OBJS) cuda/qv_error_core.o
	$(NVCC) -o $@ $^ $(NVCC_LDFLAGS)

install-cuda: cuda/quiver_cuda.so
	$(MKDIR_P) '$(DESTDIR)$(pkglibdir)'
	$(INSTALL_SHLIB) cuda/quiver_cuda.so '$(DESTDIR)$(pkglibdir)/quiver_cuda.so'

.PHONY: install-cuda unit bench fuzz

# ---- tests ------------------------------------------------------------------
UNIT_SRCS = $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS = $(patsubst test/unit/%.c,test/unit/bin/%,$(UNIT_SRCS))
UNIT_CFLAGS = -std=gnu11 -O2 -g -Wall -Isrc/core -Isrc/core/testing -Icuda -DQV_TEST_CUDA_LIB='"$(CURDIR)/cuda/quiver_cuda.so"'

test/unit/bin/%: test/unit/%.c $(CORE_SRCS) $(TEST_CORE_SRCS) $(TEST_CORE_HDRS) $(wildcard test/unit/*.h)
	@mkdir -p test/unit/bin
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(CORE_SRCS) $(TEST_CORE_SRCS) -lcmocka $(CORE_LIBS)

# Runs every unit test binary; fails if any fails.
unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

# ---- benchmarks ---------------------------------------------------------------
test/bench/quiver-bench: test/bench/quiver_bench.c $(CORE_SRCS) $(TEST_CORE_SRCS) $(TEST_CORE_HDRS)
	$(CC) -std=gnu11 -O3 -march=x86-64-v2 -Wall -Isrc/core -Isrc/core/testing -Icuda \
		-DQV_BENCH_CUDA_LIB='"$(CURDIR)/cuda/quiver_cuda.so"' -o $@ $< $(CORE_SRCS) $(TEST_CORE_SRCS) $(CORE_LIBS)

test/bench/quiver-train-bench: test/bench/train_bench.c $(CORE_SRCS) $(TEST_CORE_SRCS) $(TEST_CORE_HDRS)
	$(CC) -std=gnu11 -O3 -march=x86-64-v2 -Wall -Isrc/core -Isrc/core/testing \
		-o $@ $< $(CORE_SRCS) $(TEST_CORE_SRCS) $(CORE_LIBS)

bench: test/bench/quiver-bench test/bench/quiver-train-bench

# ---- fuzzing -----------------------------------------------------------------
# libFuzzer harness of the safetensors parser and the model loader, built from
# the core sources alone (no PostgreSQL headers) with clang's fuzzer, address
# and undefined-behaviour sanitizers; any UB report aborts.  Debian 12: clang
# (clang-14) and libclang-rt-14-dev (the fuzzer and sanitizer runtimes).
# scripts/fuzz.sh builds and runs it.
FUZZ_CC ?= clang
FUZZ_CFLAGS = -std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-Isrc/core

test/fuzz/bin/fuzz_safetensors: test/fuzz/fuzz_safetensors.c $(CORE_SRCS) $(wildcard src/core/*.h)
	@mkdir -p test/fuzz/bin
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRCS) $(CORE_LIBS)

fuzz: test/fuzz/bin/fuzz_safetensors

# The fake GPU module (a CPU test double of cuda/quiver_cuda.so) for the
# unit and TAP tests of the engine's GPU glue on machines without a GPU.
include test/fake_gpu/fake_gpu.mk
unit: fake-gpu
installcheck: fake-gpu
