import bgkit

DOCUMENTED = {
    "AwsSession",
    "BgkitError",
    "Clock",
    "Connection",
    "Counts",
    "Decision",
    "FakeClock",
    "Judge",
    "ParameterError",
    "PreflightError",
    "PromotionGate",
    "RECORD_MIME",
    "Record",
    "Release",
    "ReleaseParams",
    "RollbackFailed",
    "SandboxError",
    "SystemClock",
    "TrafficError",
    "Verdict",
    "connect",
    "patterns",
    "plans",
    "promotion_gate",
    "validate_parameters",
}


def test_exported_names_are_the_documented_ones():
    assert set(bgkit.__all__) == DOCUMENTED
    for name in bgkit.__all__:
        assert getattr(bgkit, name) is not None


def test_every_error_is_a_bgkit_error():
    for error in (
        bgkit.ParameterError,
        bgkit.PreflightError,
        bgkit.TrafficError,
        bgkit.RollbackFailed,
        bgkit.SandboxError,
    ):
        assert issubclass(error, bgkit.BgkitError)
    assert issubclass(bgkit.RollbackFailed, bgkit.TrafficError)
