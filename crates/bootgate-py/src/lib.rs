//! `bootgate._native`: conversion glue between Python and the Rust engines. Nothing else.
//! Work here only converts values and releases the GIL around anything that may take time.

mod engines;
mod error;
mod pccrc;
mod sqlite;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("BootgateError", m.py().get_type::<error::BootgateError>())?;
    m.add("WireError", m.py().get_type::<error::WireError>())?;
    engines::register(m)?;
    pccrc::register(m)?;
    sqlite::register(m)?;
    Ok(())
}
