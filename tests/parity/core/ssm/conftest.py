import pytest

from parity.core.ssm.compiled import compiled_scan_status, kernel_variant


@pytest.fixture
def kernel_build(monkeypatch):
    """use(variant): put this test on the kernel build ``variant`` (native, avx2, scalar, phases), or skip where that
    build cannot be made here (the native one must: CI has a C compiler)."""
    def use(variant: str) -> None:
        monkeypatch.setenv("PARITY_SCAN_KERNEL", variant)
        status = compiled_scan_status()
        if not status["compiled"]:
            if variant == "native":
                raise AssertionError(status["reason"])
            pytest.skip(f"{variant} build not available here: {status['reason']}")
        assert kernel_variant() == variant

    return use
