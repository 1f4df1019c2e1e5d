/*
 * write_round: one round of the write pipeline over the entries not decided yet:
 * begin (store_write.c: identify, lock and read the customers) -> decide (rules.c, pure:
 * each entry's items, with the round's in-request membership-id claims) -> commit
 * (store_write.c: the fenced write of every locked customer, its in-doubt resolution when
 * the reply is lost) -> take each customer's commit answer into its entries.
 */
#ifndef PARTNERD_WRITE_ROUND_H
#define PARTNERD_WRITE_ROUND_H

#include <stdint.h>

#include "write_state.h"

/*
 * Runs one round over w's pending entries (those not decided yet), at time now_ms;
 * count_rate: count the request against the credential's rate limit (the first round).
 * Returns 0 when the round ran (some entries may still be pending: busy locks or id races;
 * *limited > 0 instead when the request is over its rate limit: the seconds to wait), -1
 * when Redis failed before anything of this round was applied.
 */
int write_round_run(struct write_request *w, int64_t now_ms, int count_rate, int *limited);

#endif
