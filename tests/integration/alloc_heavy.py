# alloc_heavy.py -- a deterministic Python workload that allocates a lot.
#
# Builds lists, dicts, strings, bytes and tuples (about 250 MB at the peak
# with PYTHONMALLOC=malloc), reshapes them, and prints summaries and digests
# that depend on every value.  The output is the same on every run and with
# any correct malloc.
import hashlib
import sys

SCALE = int(sys.argv[1]) if len(sys.argv) > 1 else 1


def lcg(seed):
    """A small deterministic generator (no random module, no hash seeds)."""
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield x >> 16


def digest(items):
    h = hashlib.sha256()
    for it in items:
        h.update(repr(it).encode())
    return h.hexdigest()[:16]


gen = lcg(42)

# 1. Many small strings in a list, then a dict keyed by them.
words = ["w%07d-%x" % (i, next(gen) % 100000) for i in range(400000 * SCALE)]
index = {w: i for i, w in enumerate(words)}
print("words", len(words), len(index), digest(words[::997]))

# 2. Lists of tuples, sorted by a computed key.
rows = [(next(gen) % 1000, i, words[i % len(words)]) for i in range(300000 * SCALE)]
rows.sort()
print("rows", len(rows), rows[0], rows[-1], digest(rows[::1009]))

# 3. Bytes objects of various sizes (up to 256 KiB), kept alive together.
blobs = []
total = 0
for i in range(2000 * SCALE):
    n = 64 + next(gen) % (64 << 10) if i % 50 else 256 << 10
    b = bytes((i + k) & 0xFF for k in range(256)) * (n // 256 + 1)
    blobs.append(b[:n])
    total += n
h = hashlib.sha256()
for b in blobs:
    h.update(b)
print("blobs", len(blobs), total, h.hexdigest()[:16])

# 4. Nested dicts of lists; grow, shrink and regrow.
groups = {}
for i, w in enumerate(words):
    groups.setdefault(i % 4099, []).append(w[::-1])
for k in list(groups)[::3]:
    del groups[k]
for k in range(0, 4099, 7):
    groups.setdefault(k, []).extend(str(j) * 3 for j in range(50))
sizes = sorted(len(v) for v in groups.values())
print("groups", len(groups), sizes[0], sizes[-1], sum(sizes),
      digest(sorted(groups)[:100]))

# 5. String building: join and split large texts.
text = "\n".join("%s %d %s" % (w, index[w], w.upper()) for w in words[::2])
parts = text.split("\n")
print("text", len(text), len(parts), hashlib.sha256(text.encode()).hexdigest()[:16])

# 6. Free in a different order than allocation, then allocate again.
del text, parts
blobs = blobs[1::2]
rows = rows[::3]
again = [[j * i for j in range(20)] for i in range(100000 * SCALE)]
print("again", len(again), sum(map(sum, again[::101])), len(blobs), len(rows))
print("done")
