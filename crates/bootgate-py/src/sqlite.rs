//! `SqliteWriter` for Python: bootgate_io::sqlite::SqliteWriter with the GIL released while it writes
//! (why: see that module).

use std::sync::Mutex;

use bootgate_io::sqlite::{SqliteWriter as RsWriter, Value};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

/// One SQL value of a row, converted while the GIL is held.
#[derive(Debug)]
struct Val(Value);

impl<'py> FromPyObject<'py> for Val {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        Ok(Val(if ob.is_none() {
            Value::Null
        } else if let Ok(s) = ob.downcast::<PyString>() {
            Value::Text(s.to_str()?.to_owned())
        } else if let Ok(b) = ob.downcast::<PyBool>() {
            Value::Int(i64::from(b.is_true()))
        } else if let Ok(i) = ob.downcast::<PyInt>() {
            Value::Int(i.extract()?)
        } else if let Ok(f) = ob.downcast::<PyFloat>() {
            Value::Real(f.value())
        } else {
            return Err(PyTypeError::new_err(format!(
                "a SQL value must be None, str, bool, int or float, not {}",
                ob.get_type().name()?
            )));
        }))
    }
}

/// Writes batches of rows to one SQLite database file, each batch in one transaction, without the GIL.
#[pyclass(module = "bootgate._native")]
#[derive(Debug)]
pub struct SqliteWriter {
    conn: Mutex<Option<RsWriter>>,
}

#[pymethods]
impl SqliteWriter {
    /// Opens `path` (an existing database) read-write with the given busy timeout. Fails with OSError
    /// when the process has no dynamically loaded libsqlite3 to share or the file cannot be opened.
    #[new]
    fn new(path: &str, busy_timeout_ms: i32) -> PyResult<Self> {
        let w = RsWriter::open(path, busy_timeout_ms).map_err(PyOSError::new_err)?;
        Ok(SqliteWriter { conn: Mutex::new(Some(w)) })
    }

    /// Runs `statements` ([(sql, [row, ...]), ...], each row a sequence of None/str/bool/int/float
    /// for the statement's `?` parameters) in one transaction, rolled back on any error (raised as
    /// RuntimeError with SQLite's message). The GIL is released while SQLite works.
    fn write(&self, py: Python<'_>, statements: Vec<(String, Vec<Vec<Val>>)>) -> PyResult<()> {
        let statements: Vec<(String, Vec<Vec<Value>>)> = statements
            .into_iter()
            .map(|(sql, rows)| (sql, rows.into_iter().map(|r| r.into_iter().map(|v| v.0).collect()).collect()))
            .collect();
        py.allow_threads(|| {
            let mut guard = self.conn.lock().map_err(|_| "the writer's lock is poisoned".to_owned())?;
            let conn = guard.as_mut().ok_or_else(|| "the writer is closed".to_owned())?;
            conn.write(&statements)
        })
        .map_err(PyRuntimeError::new_err)
    }

    /// Closes the connection (later writes fail).
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| {
            if let Ok(mut g) = self.conn.lock() {
                g.take();
            }
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SqliteWriter>()
}
