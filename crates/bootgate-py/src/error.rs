//! The one mapping from Rust errors to Python exceptions.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::PyErr;

create_exception!(_native, BootgateError, PyException, "Base of every error raised by bootgate._native.");
create_exception!(_native, WireError, BootgateError, "Bytes that do not parse as the protocol says.");

/// Every error the native module can raise.
#[derive(Debug)]
pub enum Error {
    Io(std::io::Error),
    Wire(String),
    Value(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Io(e) => PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string())),
            Error::Wire(msg) => WireError::new_err(msg),
            Error::Value(msg) => PyValueError::new_err(msg),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
