"""A fair queue: one client (one address, as the vote rules count them) may have at most `limit` requests queued
or running at once; more are refused at once with one line, so a flood from one client cannot fill the queue
and refuse everyone else (Gradio's own queue has one size for all, first come first served).

Gradio has no per-client hook, so its queue's `push` (the one place every page and API request joins the queue)
is wrapped on this app's queue object: the count is of the events Gradio itself holds, so nothing has to be
released when a request ends, however it ends.
"""

from typing import Callable

DEFAULT_LIMIT = 8  # requests queued or running per client: a person clicks Compare a few times, not dozens


def cap_per_client(demo, limit: int, address_of: Callable) -> None:
    """At most `limit` (0: no cap) of one client's requests queued or running in `demo`'s queue at once."""
    queue = demo._queue  # Gradio's Queue object, created by demo.queue()
    if not limit:
        return
    join = queue.push

    def held_by(address) -> int:
        waiting = [e for q in queue.event_queue_per_concurrency_id.values() for e in q.queue]
        running = [e for job in queue.active_jobs if job for e in job]
        return sum(address_of(e.request) == address for e in waiting + running)

    async def push(body, request, username):
        address = address_of(request)
        if held_by(address) >= limit:
            return (False, f"You have {limit} requests waiting or running: wait for one to finish, then try again "
                    "(one visitor may not fill the queue for everyone).", "queue_full")
        return await join(body=body, request=request, username=username)

    queue.push = push
