import pytest

from bootgate import _native


def test_native_module_reports_its_version() -> None:
    import bootgate

    assert _native.__version__ == bootgate.__version__


def test_error_family() -> None:
    assert issubclass(_native.WireError, _native.BootgateError)


def test_bad_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="bind"):
        _native.TftpEngine(bind="not-an-address", root="/nonexistent")
