# GPAW build settings used by `make venv` (GPAW_CONFIG points here).
# g++ because plain gcc fails on <algorithm> in GPAW's C++ sources; serial build (no MPI) with
# Debian's libxc, OpenBLAS and FFTW (apt: libxc-dev libopenblas-dev libfftw3-dev).
compiler = 'g++'
mpi = False
fftw = True
libraries = ['xc', 'fftw3', 'openblas']
