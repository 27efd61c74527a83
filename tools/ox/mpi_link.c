/* See mpi_link.h. Messages larger than INT_MAX bytes go in pieces. */
#include "mpi_link.h"

#ifdef OX_HAVE_MPI
#include <limits.h>
#include <mpi.h>
#include <stdio.h>

bool mpi_link_available(void)
{
    return true;
}

const char *mpi_link_version(void)
{
    static char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(text, &len);
    for (int i = 0; i < len; i++)
        if (text[i] == ',' || text[i] == '\n') {
            text[i] = '\0';
            break;
        }
    return text;
}

int mpi_link_init(int *rank, int *size)
{
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready && MPI_Init(NULL, NULL) != MPI_SUCCESS) return -1;
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return 0;
}

void mpi_link_finalize(void)
{
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
}

void mpi_link_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
}

int mpi_link_send(const void *data, size_t bytes, int to)
{
    const char *p = data;
    do {
        int n = bytes > INT_MAX ? INT_MAX : (int)bytes;
        if (MPI_Send(p, n, MPI_BYTE, to, 0, MPI_COMM_WORLD) != MPI_SUCCESS) return -1;
        p += n;
        bytes -= (size_t)n;
    } while (bytes > 0);
    return 0;
}

int mpi_link_recv(void *data, size_t bytes, int from)
{
    char *p = data;
    do {
        int n = bytes > INT_MAX ? INT_MAX : (int)bytes;
        if (MPI_Recv(p, n, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return -1;
        p += n;
        bytes -= (size_t)n;
    } while (bytes > 0);
    return 0;
}

int mpi_link_allgather(const void *mine, size_t bytes, void *all)
{
    if (bytes > INT_MAX) return -1;
    return MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD) ==
                   MPI_SUCCESS
               ? 0
               : -1;
}

#else /* no MPI in this build */

bool mpi_link_available(void)
{
    return false;
}

const char *mpi_link_version(void)
{
    return "off (built without MPI)";
}

int mpi_link_init(int *rank, int *size)
{
    *rank = 0;
    *size = 1;
    return -1;
}

void mpi_link_finalize(void) {}

void mpi_link_abort(int code)
{
    (void)code;
}

int mpi_link_send(const void *data, size_t bytes, int to)
{
    (void)data, (void)bytes, (void)to;
    return -1;
}

int mpi_link_recv(void *data, size_t bytes, int from)
{
    (void)data, (void)bytes, (void)from;
    return -1;
}

int mpi_link_allgather(const void *mine, size_t bytes, void *all)
{
    (void)mine, (void)bytes, (void)all;
    return -1;
}

#endif
