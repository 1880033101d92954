/* networking.bootstrap: pmix -- the cluster's membership from the launcher's PMIx server
 * (srun --mpi=pmix, Open MPI's mpirun) instead of a hostfile: node id = rank, number of
 * nodes = job size, every node's endpoint exchanged through PMIx Put, Commit and a Fence that
 * collects the data. The result is the same struct membership a hostfile gives
 * (membership_from_endpoints()), so the runtime's dialling and `runtime status` do not know
 * the difference. docs/config.md ("PMIx") and docs/design/bootstrap-pmix.md say why each
 * choice is what it is.
 *
 * Only the runtime links this (chi_bootstrap_pmix, with libpmix when the build found it):
 * clients and the CLI never talk PMIx. Built without PMIx, bootstrap_pmix_init() refuses with
 * a message that says how to get it. One membership per process: PMIx_Init once, at start;
 * bootstrap_pmix_fini() at shutdown. */
#ifndef CHI_COMMON_BOOTSTRAP_PMIX_H
#define CHI_COMMON_BOOTSTRAP_PMIX_H

#include <stddef.h>

#include "config.h"
#include "membership.h"

/** The PMIx key under which each rank publishes its endpoint ("address:port"). */
#define BOOTSTRAP_PMIX_KEY "chimaera.endpoint"

/** 1 when this build can bootstrap from PMIx. */
int bootstrap_pmix_available(void);

/**
 * PMIx_Init, publish this rank's endpoint, fence with data collection, read every rank's
 * endpoint into @p m. This rank's endpoint: networking.bind, else the first address the
 * machine's hostname resolves to; port networking.port + the local rank (the rank among
 * this job's processes on this machine), so that ranks sharing a machine differ.
 * The fence is bounded by networking.wait_for_restart (at least 10 s): it never hangs.
 * @p cfg->bootstrap need not be "pmix" (tests); CHI_NODE_ID is not used (the rank decides).
 * @param err Why, on failure.
 * @return 0 with @p m built and m->self the rank; -ENOTSUP (built without PMIx), -ENOENT (not
 *         started by a PMIx server), -ETIMEDOUT (the fence), -EINVAL (an endpoint that cannot
 *         be made or read, two ranks at one endpoint), -EIO (another PMIx failure, named),
 *         -ENOMEM. After a failure, still call bootstrap_pmix_fini().
 */
int bootstrap_pmix_init(const struct config *cfg, struct membership *m, char *err, size_t err_len);

/** PMIx_Finalize, when bootstrap_pmix_init() initialised PMIx; else nothing. */
void bootstrap_pmix_fini(void);

#endif
