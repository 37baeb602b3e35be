// The forward entry point of gates_avx512.cpp as convlstm_forward, for the library built at
// install time (setup.py); simd.py loads it, or builds gates_avx512.cpp at run time.
#define kernel convlstm_forward
#include "gates_avx512.cpp"

#ifdef CONVLSTM_SOURCE_SHA256
extern "C" const char* convlstm_source_sha256() { return CONVLSTM_SOURCE_SHA256; }
#endif
