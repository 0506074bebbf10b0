# test/fake_gpu/fake_gpu.mk — the FAKE GPU module, a CPU test double of
# cuda/quiver_cuda.so (see test/fake_gpu/fake_cuda.c).
#
# Include it from the main Makefile AFTER CORE_SRCS, CORE_LIBS and
# UNIT_CFLAGS are defined and after `include $(PGXS)` (so none of its
# targets becomes the default goal), e.g. as the Makefile's last line:
#
#   include test/fake_gpu/fake_gpu.mk
#
#   make fake-gpu         build test/fake_gpu/quiver_fake_cuda.so
#   make unit             also builds it before test/unit/bin/test_fake_gpu
#
# The library links its own copy of the engine core (compiled here with
# hidden visibility) and exports only quiver_cuda_api.  It needs no CUDA and
# is never installed.

FAKE_GPU_LIB = $(CURDIR)/test/fake_gpu/quiver_fake_cuda.so
FAKE_GPU_CFLAGS = -fPIC -shared -std=gnu11 -O2 -g -Wall -fvisibility=hidden \
	-Isrc/core -Icuda

test/fake_gpu/quiver_fake_cuda.so: test/fake_gpu/fake_cuda.c $(CORE_SRCS) \
		$(wildcard src/core/*.h) $(wildcard cuda/*.h)
	$(CC) $(FAKE_GPU_CFLAGS) -o $@ test/fake_gpu/fake_cuda.c $(CORE_SRCS) \
		-Wl,--no-undefined $(CORE_LIBS)

fake-gpu: test/fake_gpu/quiver_fake_cuda.so

.PHONY: fake-gpu

# The unit tests find the fake at QV_TEST_FAKE_GPU_LIB; test_fake_gpu needs it
# built first (order-only: a rebuilt fake does not relink the test).
UNIT_CFLAGS += -DQV_TEST_FAKE_GPU_LIB='"$(FAKE_GPU_LIB)"'
test/unit/bin/test_fake_gpu: | test/fake_gpu/quiver_fake_cuda.so

EXTRA_CLEAN += test/fake_gpu/quiver_fake_cuda.so
