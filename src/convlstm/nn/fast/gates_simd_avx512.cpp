// The AVX-512 BF16 library of gates_simd.cpp's loops, built at install time (setup.py).
#define CONVLSTM_LIBRARY 1
#include "gates_simd.cpp"
