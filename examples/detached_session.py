"""A detached session: submit, let this process go, attach from another one, collect.

Run: .venv/bin/python examples/detached_session.py
(it submits, then starts a second Python process that attaches by session id).
Add backend="fargate" to starburst.session(...) to run the same on AWS.
"""

import subprocess
import sys
import time

import starburst


def bootstrap_mean(seed: int) -> float:
    import random

    rng = random.Random(seed)
    sample = [1.2, 3.4, 2.2, 5.1, 0.7, 4.4, 3.3, 2.8]
    time.sleep(0.002)  # a little work per item
    return sum(rng.choice(sample) for _ in sample) / len(sample)


def submit() -> str:
    session = starburst.session(workers=2, ttl="1h")
    session.map(bootstrap_mean, range(2_000))  # returns once the inputs are stored
    session.submit(max, [3, 1, 4, 1, 5])  # one call, also a run
    print(f"submitted to {session.id}; this process can now exit")
    return session.id


def attach(session_id: str) -> None:
    session = starburst.attach(session_id)
    print(session.status())
    means, largest = session.collect(wait=True, timeout=600)
    print(f"{len(means)} bootstrap means, average {sum(means) / len(means):.3f}; max {largest}")
    session.cleanup()  # stop the workers and delete the session's data
    print(f"cleaned up; sessions left: {[s.session_id for s in starburst.list_sessions()]}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        attach(sys.argv[1])
    else:
        session_id = submit()
        subprocess.run([sys.executable, __file__, session_id], check=True)
