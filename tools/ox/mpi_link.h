/* The little of MPI that 'ox run --mpi' uses, behind functions that exist
 * with or without MPI (mpi_link.c is compiled with OX_HAVE_MPI when CMake
 * finds an MPI implementation; without it every call says MPI is off). */
#ifndef OX_TOOLS_MPI_LINK_H
#define OX_TOOLS_MPI_LINK_H

#include <stdbool.h>
#include <stddef.h>

/* Whether this build has MPI, and which ("Open MPI v4.1.4"). */
bool mpi_link_available(void);
const char *mpi_link_version(void);

/* MPI_Init; *rank and *size of MPI_COMM_WORLD. 0 on success. */
int mpi_link_init(int *rank, int *size);
void mpi_link_finalize(void);
/* End every rank (after an error one rank cannot report to the others). */
void mpi_link_abort(int code);

/* Blocking point-to-point messages of bytes on MPI_COMM_WORLD. 0 on success. */
int mpi_link_send(const void *data, size_t bytes, int to);
int mpi_link_recv(void *data, size_t bytes, int from);

/* Every rank's `bytes` into all (size x bytes), in rank order. 0 on success. */
int mpi_link_allgather(const void *mine, size_t bytes, void *all);

#endif /* OX_TOOLS_MPI_LINK_H */
