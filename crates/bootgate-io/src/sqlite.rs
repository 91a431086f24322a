//! `SqliteWriter`: the store's group commits to a SQLite file, a whole transaction per call, from any
//! thread (bootgate-py calls it with the GIL released).
//!
//! Python's `sqlite3` releases the GIL around every `sqlite3_step` and must take it back after each
//! one. A group commit is hundreds of row steps; while the event loop's thread is busy, each take-back
//! waits up to the interpreter's switch interval (5 ms), so a commit took several times its CPU time
//! and the requests waiting on it left the event loop idle. Here the rows are converted while the GIL
//! is held, then the whole transaction (BEGIN IMMEDIATE, every row, COMMIT) runs without it.
//!
//! Which SQLite: the very library instance Python's `sqlite3` module already loaded, found with
//! `dlopen(RTLD_NOLOAD)`. Two SQLite copies in one process would each keep their own POSIX lock
//! bookkeeping, and one closing the database file would drop the other's locks (sqlite.org,
//! "How To Corrupt An SQLite Database File", 2.2.1). When that library is not loaded (a Python with
//! SQLite built in statically), the constructor fails and the store keeps its Python writer.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};

const SONAME: &CStr = c"libsqlite3.so.0";
const SQLITE_OK: c_int = 0;
const SQLITE_DONE: c_int = 101;
const SQLITE_OPEN_READWRITE: c_int = 0x2;
const SQLITE_OPEN_NOMUTEX: c_int = 0x8000; // one thread at a time: the Mutex below

type Db = c_void;
type Stmt = c_void;
type Destructor = isize; // SQLITE_TRANSIENT (-1): SQLite copies the bytes before bind returns

/// The few entry points used, resolved once from the loaded library.
#[derive(Debug, Clone, Copy)]
struct Api {
    open_v2: unsafe extern "C" fn(*const c_char, *mut *mut Db, c_int, *const c_char) -> c_int,
    close_v2: unsafe extern "C" fn(*mut Db) -> c_int,
    exec: unsafe extern "C" fn(*mut Db, *const c_char, *const c_void, *mut c_void, *mut *mut c_char) -> c_int,
    prepare_v2: unsafe extern "C" fn(*mut Db, *const c_char, c_int, *mut *mut Stmt, *mut *const c_char) -> c_int,
    bind_null: unsafe extern "C" fn(*mut Stmt, c_int) -> c_int,
    bind_int64: unsafe extern "C" fn(*mut Stmt, c_int, i64) -> c_int,
    bind_double: unsafe extern "C" fn(*mut Stmt, c_int, f64) -> c_int,
    bind_text: unsafe extern "C" fn(*mut Stmt, c_int, *const c_char, c_int, Destructor) -> c_int,
    bind_parameter_count: unsafe extern "C" fn(*mut Stmt) -> c_int,
    step: unsafe extern "C" fn(*mut Stmt) -> c_int,
    reset: unsafe extern "C" fn(*mut Stmt) -> c_int,
    finalize: unsafe extern "C" fn(*mut Stmt) -> c_int,
    errmsg: unsafe extern "C" fn(*mut Db) -> *const c_char,
    busy_timeout: unsafe extern "C" fn(*mut Db, c_int) -> c_int,
}

fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Result<T, String> {
    // SAFETY: `lib` is a handle from dlopen; dlsym only reads the name.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        return Err(format!("{} has no {}", SONAME.to_string_lossy(), name.to_string_lossy()));
    }
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: T is the function pointer type of this SQLite C API entry point (sqlite3.h).
    Ok(unsafe { std::mem::transmute_copy::<*mut c_void, T>(&p) })
}

impl Api {
    fn load() -> Result<Api, String> {
        // SAFETY: RTLD_NOLOAD only looks the library up among those already loaded.
        let lib = unsafe { libc::dlopen(SONAME.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if lib.is_null() {
            return Err(format!("{} is not loaded in this process", SONAME.to_string_lossy()));
        }
        Ok(Api {
            open_v2: sym(lib, c"sqlite3_open_v2")?,
            close_v2: sym(lib, c"sqlite3_close_v2")?,
            exec: sym(lib, c"sqlite3_exec")?,
            prepare_v2: sym(lib, c"sqlite3_prepare_v2")?,
            bind_null: sym(lib, c"sqlite3_bind_null")?,
            bind_int64: sym(lib, c"sqlite3_bind_int64")?,
            bind_double: sym(lib, c"sqlite3_bind_double")?,
            bind_text: sym(lib, c"sqlite3_bind_text")?,
            bind_parameter_count: sym(lib, c"sqlite3_bind_parameter_count")?,
            step: sym(lib, c"sqlite3_step")?,
            reset: sym(lib, c"sqlite3_reset")?,
            finalize: sym(lib, c"sqlite3_finalize")?,
            errmsg: sym(lib, c"sqlite3_errmsg")?,
            busy_timeout: sym(lib, c"sqlite3_busy_timeout")?,
        })
    }
}

/// One SQL value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// An open connection and its prepared statements (by SQL text): see the module's documentation.
#[derive(Debug)]
pub struct SqliteWriter {
    api: Api,
    db: *mut Db,
    stmts: HashMap<String, *mut Stmt>,
}

// SAFETY: the connection is opened SQLITE_OPEN_NOMUTEX; `&mut self` on every use means one thread at a
// time (SQLite's multi-thread mode allows that).
unsafe impl Send for SqliteWriter {}

impl SqliteWriter {
    /// Opens `path` (an existing database) read-write with the given busy timeout, through the
    /// libsqlite3 already loaded in the process (an error when there is none).
    pub fn open(path: &str, busy_timeout_ms: i32) -> Result<SqliteWriter, String> {
        let api = Api::load()?;
        let cpath = CString::new(path).map_err(|_| "a path with a NUL byte".to_owned())?;
        let mut db: *mut Db = std::ptr::null_mut();
        // SAFETY: cpath lives across the call; db receives the handle (closed by Drop even on failure).
        let rc = unsafe {
            (api.open_v2)(cpath.as_ptr(), &mut db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, std::ptr::null())
        };
        if db.is_null() {
            return Err(format!("cannot open {path}"));
        }
        let w = SqliteWriter { api, db, stmts: HashMap::new() };
        if rc != SQLITE_OK {
            return Err(w.error(path));
        }
        // SAFETY: db is open.
        unsafe { (api.busy_timeout)(db, busy_timeout_ms) };
        w.exec(c"PRAGMA synchronous=NORMAL")?;
        Ok(w)
    }

    fn error(&self, what: &str) -> String {
        // SAFETY: db is open; errmsg returns a NUL-terminated string owned by SQLite.
        let msg = unsafe { CStr::from_ptr((self.api.errmsg)(self.db)) };
        format!("{what}: {}", msg.to_string_lossy())
    }

    fn exec(&self, sql: &CStr) -> Result<(), String> {
        // SAFETY: db is open; no callback, no error-message out pointer.
        let rc = unsafe {
            (self.api.exec)(self.db, sql.as_ptr(), std::ptr::null(), std::ptr::null_mut(), std::ptr::null_mut())
        };
        if rc == SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(&sql.to_string_lossy()))
        }
    }

    fn stmt(&mut self, sql: &str) -> Result<*mut Stmt, String> {
        if let Some(s) = self.stmts.get(sql) {
            return Ok(*s);
        }
        let c = CString::new(sql).map_err(|_| "SQL with a NUL byte".to_owned())?;
        let mut s: *mut Stmt = std::ptr::null_mut();
        // SAFETY: db is open; c lives across the call; s receives the statement.
        let rc = unsafe { (self.api.prepare_v2)(self.db, c.as_ptr(), -1, &mut s, std::ptr::null_mut()) };
        if rc != SQLITE_OK || s.is_null() {
            return Err(self.error("prepare"));
        }
        self.stmts.insert(sql.to_owned(), s);
        Ok(s)
    }

    fn row(&self, s: *mut Stmt, row: &[Value]) -> Result<(), String> {
        let api = self.api;
        // SAFETY: s is a statement prepared on db; every bound value outlives its bind call
        // (text is copied by SQLite: SQLITE_TRANSIENT).
        unsafe {
            if (api.bind_parameter_count)(s) != row.len() as c_int {
                return Err(format!("a row of {} values for {} parameters", row.len(), (api.bind_parameter_count)(s)));
            }
            for (i, v) in row.iter().enumerate() {
                let n = i as c_int + 1;
                let rc = match v {
                    Value::Null => (api.bind_null)(s, n),
                    Value::Int(x) => (api.bind_int64)(s, n, *x),
                    Value::Real(x) => (api.bind_double)(s, n, *x),
                    Value::Text(t) => {
                        let len = c_int::try_from(t.len()).map_err(|_| "text too long".to_owned())?;
                        (api.bind_text)(s, n, t.as_ptr().cast(), len, -1)
                    }
                };
                if rc != SQLITE_OK {
                    (api.reset)(s);
                    return Err(self.error("bind"));
                }
            }
            let rc = (api.step)(s);
            (api.reset)(s);
            if rc != SQLITE_DONE {
                return Err(self.error("step"));
            }
        }
        Ok(())
    }

    /// Runs `statements` ([(sql, rows)], each row the values of the statement's `?` parameters) in one
    /// transaction (BEGIN IMMEDIATE ... COMMIT), rolled back on any error.
    pub fn write(&mut self, statements: &[(String, Vec<Vec<Value>>)]) -> Result<(), String> {
        self.exec(c"BEGIN IMMEDIATE")?;
        let mut work = || -> Result<(), String> {
            for (sql, rows) in statements {
                let s = self.stmt(sql)?;
                for row in rows {
                    self.row(s, row)?;
                }
            }
            self.exec(c"COMMIT")
        };
        let result = work();
        if result.is_err() {
            let _ = self.exec(c"ROLLBACK"); // nothing to roll back when COMMIT itself ended the transaction
        }
        result
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        // SAFETY: every statement was prepared on db and is finalized once; db is closed last.
        unsafe {
            for (_, s) in self.stmts.drain() {
                (self.api.finalize)(s);
            }
            (self.api.close_v2)(self.db);
        }
    }
}

