"""The soak verdict: flat memory passes; growth after warm-up, error-counter growth or a client failure fail."""

from bench.soak import Sample, verdict


def samples(rss, errors=None, failures=None):
    errors = errors or [0] * len(rss)
    failures = failures or [0] * len(rss)
    return [Sample(t=10.0 * i, rss_mib=r, requests=100 * i, service_errors=e, failures=f)
            for i, (r, e, f) in enumerate(zip(rss, errors, failures))]


def test_flat_memory_after_warmup_passes_even_with_warmup_growth():
    result = verdict(samples([40, 60, 70, 71, 70, 72, 71, 70, 71, 72]), warmup=20, max_growth_mib=8)
    assert result["passed"] and result["rss_growth_mib"] <= 2


def test_steady_growth_fails():
    result = verdict(samples([70 + 3 * i for i in range(10)]), warmup=20, max_growth_mib=8)
    assert not result["passed"] and result["rss_growth_mib"] > 8


def test_error_counter_growth_after_warmup_fails_but_warmup_errors_do_not():
    flat = [70] * 10
    assert verdict(samples(flat, errors=[0, 2, 2, 2, 2, 2, 2, 2, 2, 2]), 20, 8)["passed"]
    grown = verdict(samples(flat, errors=[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]), 20, 8)
    assert not grown["passed"] and grown["service_error_growth"] == 1


def test_client_failures_fail():
    assert not verdict(samples([70] * 10, failures=[0] * 9 + [1]), 20, 8)["passed"]
