"""The preparation benchmarks; each prints its figure beside its baseline measured in the same run."""


def cpu_name() -> str:
    """The CPU model, for the figures' record (benchmarks differ up to 5x between machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")
    except OSError:
        return "unknown"
