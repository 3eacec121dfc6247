/* Answers oneMKL's "is this an Intel CPU?" query with yes, so that the MKL inside libtorch picks its AVX2/AVX-512
   kernels on AMD CPUs too (it otherwise falls back to a slow path). Loaded RTLD_GLOBAL before libtorch by
   LlavaInterp.Native.NativeRuntime; see docs/performance.md. */
int mkl_serv_intel_cpu_true(void) { return 1; }
