"""Helpers shared by the bench scripts' report generators (imported from their embedded Python)."""


def rnd(x, n=1):
    return None if x is None else round(x, n)


def f1(x, n=1):
    return "–" if x is None else f"{x:,.{n}f}"


def prom(path):
    """Prometheus text exposition as {series: value}; {} if the file is missing."""
    out = {}
    try:
        for line in open(path):
            if line.startswith("#") or not line.strip():
                continue
            k, _, v = line.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    except OSError:
        pass
    return out
