/*
 * blas.cu — cuBLAS, loaded on first use.
 *
 * The module does not link libcublas: libcublasLt's load-time constructor
 * dlopens libcuda.so.1 and takes about 0.3 s and 200 MB of resident memory,
 * which a CPU-only engine that merely opens the module to count devices
 * should not pay, and loading the module must make no CUDA call.  The
 * library (libcublas.so.<major of the headers>, found through the module's
 * runpath) is therefore opened by the first lane_create, once per process,
 * with RTLD_NODELETE like the module itself.
 */
#include <cublas_v2.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#include "internal.cuh"

#define QV_STR2(x) #x
#define QV_STR(x) QV_STR2(x)
#define CUBLAS_LIB "libcublas.so." QV_STR(CUBLAS_VER_MAJOR)

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static QvBlas blas_fns;
static int	blas_ok;
static char blas_why[200];

/* dlopen cuBLAS and resolve the entries the module uses (once). */
static void
load_blas(void)
{
	void	   *h = dlopen(CUBLAS_LIB, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	const char *missing = NULL;

	if (h == NULL)
	{
		const char *why = dlerror();

		snprintf(blas_why, sizeof(blas_why), "cannot load " CUBLAS_LIB ": %s",
				 why ? why : "unknown dlopen error");
		return;
	}
#define RESOLVE(field, name) \
	if (missing == NULL && (*(void **) &blas_fns.field = dlsym(h, name)) == NULL) \
		missing = name
	RESOLVE(create, "cublasCreate_v2");
	RESOLVE(destroy, "cublasDestroy_v2");
	RESOLVE(set_stream, "cublasSetStream_v2");
	RESOLVE(set_math_mode, "cublasSetMathMode");
	RESOLVE(sgemm, "cublasSgemm_v2");
	RESOLVE(status_name, "cublasGetStatusName");
	RESOLVE(status_string, "cublasGetStatusString");
#undef RESOLVE
	if (missing != NULL)
	{
		snprintf(blas_why, sizeof(blas_why), CUBLAS_LIB " has no symbol %s", missing);
		return;
	}
	blas_ok = 1;
}

int
qvc_blas(const QvBlas **out, QvError *err)
{
	*out = NULL;
	if (pthread_once(&blas_once, load_blas) != 0)
		return qv_error(err, QV_EINTERNAL, "pthread_once failed loading " CUBLAS_LIB);
	if (!blas_ok)
		return qv_error(err, QV_EDEVICE, "%s", blas_why);
	*out = &blas_fns;
	return QV_OK;
}

const QvBlas *
qvc_blas_loaded(void)
{
	return blas_ok ? &blas_fns : NULL;
}
