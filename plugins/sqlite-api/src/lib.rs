//! `sqlite-api`: a JSON API on SQLite (rusqlite, with SQLite compiled in),
//! state opened in `init` from `--app-arg db=PATH`.
//!
//! * `GET /items`, `POST /items` `{"name": "..", "qty": 3}` -> 201 with
//!   `Location: /items/<id>`
//! * `GET|DELETE /items/{id}`
//!
//! Threads: every worker process runs `init` and opens its own
//! connection. A `rusqlite::Connection` may move between threads but not be
//! shared by them (`Send`, not `Sync`), and the app's threads all call the
//! same `&self`: so the connection sits in a `Mutex`, one statement at a
//! time per process. That is what SQLite allows anyway for writes (one
//! writer per database); for many concurrent reads, open a connection per
//! app thread instead (a small pool). Across processes, WAL mode lets
//! readers go on while one writes, and the busy timeout makes a writer wait
//! for another process's write instead of failing.
#![forbid(unsafe_code)]

use std::io::Read;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use abi::http::{Method, StatusCode};
use abi::route::{self, Params, Routed, Router};
use abi::{App, Body, Config, Environ, Error, StartResponse};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::json;

const BODY_LIMIT: u64 = 16 * 1024;

#[derive(Serialize)]
struct Item {
    id: i64,
    name: String,
    qty: i64,
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
    #[serde(default)]
    qty: i64,
}

#[derive(Clone, Copy)]
enum Endpoint {
    List,
    Create,
    Show,
    Delete,
}

// guide:start state
pub struct SqliteApi {
    db: Mutex<Connection>,
    router: Router<Endpoint>,
}

fn open(path: &str) -> rusqlite::Result<Connection> {
    let db = Connection::open(path)?;
    db.busy_timeout(Duration::from_secs(5))?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS items (
             id   INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             qty  INTEGER NOT NULL
         )",
    )?;
    Ok(db)
}
// guide:end state

/// A database error is the server's failure: logged, answered 500.
fn db_error(e: rusqlite::Error) -> Error {
    Error::new(format_args!("database: {e}"))
}

fn api_error(status: StatusCode, message: &str) -> Error {
    Error::status(status).with_json(&json!({ "error": message }))
}

fn respond_json(
    start: &mut StartResponse<'_>,
    status: StatusCode,
    value: &impl Serialize,
) -> Result<Body, Error> {
    let body = serde_json::to_vec(value).map_err(Error::new)?;
    start
        .status(status)
        .header("content-type", "application/json")
        .start()?;
    Ok(Body::from(body))
}

impl SqliteApi {
    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held left no transaction open (each
        // statement commits on its own), so the connection is still good.
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn list(&self, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let db = self.db();
        let mut statement = db
            .prepare_cached("SELECT id, name, qty FROM items ORDER BY id")
            .map_err(db_error)?;
        let items = statement
            .query_map([], |row| {
                Ok(Item {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    qty: row.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db_error)?;
        respond_json(start, StatusCode::OK, &items)
    }

    // guide:start create
    fn create(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let mut body = Vec::new();
        env.input().take(BODY_LIMIT + 1).read_to_end(&mut body)?;
        if body.len() as u64 > BODY_LIMIT {
            return Err(api_error(StatusCode::PAYLOAD_TOO_LARGE, "body over 16 KiB"));
        }
        // Not JSON, or not an item: `?` answers 400 (the SDK's
        // `From<serde_json::Error>`).
        let new: NewItem = serde_json::from_slice(&body)?;
        let name = new.name.trim();
        if name.is_empty() {
            return Err(api_error(StatusCode::UNPROCESSABLE_ENTITY, "name is empty"));
        }
        let id = {
            let db = self.db();
            db.prepare_cached("INSERT INTO items (name, qty) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![name, new.qty]))
                .map_err(db_error)?;
            db.last_insert_rowid()
        };
        let item = Item {
            id,
            name: name.to_owned(),
            qty: new.qty,
        };
        let body = serde_json::to_vec(&item).map_err(Error::new)?;
        start
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .header("location", &format!("/items/{id}"))
            .start()?;
        Ok(Body::from(body))
    }
    // guide:end create

    fn show(&self, id: i64, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let item = self
            .db()
            .prepare_cached("SELECT name, qty FROM items WHERE id = ?1")
            .and_then(|mut s| {
                s.query_row([id], |row| {
                    Ok(Item {
                        id,
                        name: row.get(0)?,
                        qty: row.get(1)?,
                    })
                })
                .optional()
            })
            .map_err(db_error)?;
        match item {
            Some(item) => respond_json(start, StatusCode::OK, &item),
            None => Err(api_error(StatusCode::NOT_FOUND, "no such item")),
        }
    }

    fn delete(&self, id: i64, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let deleted = self
            .db()
            .prepare_cached("DELETE FROM items WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db_error)?;
        if deleted == 0 {
            return Err(api_error(StatusCode::NOT_FOUND, "no such item"));
        }
        start.status(StatusCode::NO_CONTENT).start()?;
        Ok(Body::empty())
    }

    fn dispatch(
        &self,
        endpoint: Endpoint,
        params: &Params,
        env: &mut Environ<'_>,
        start: &mut StartResponse<'_>,
    ) -> Result<Body, Error> {
        match endpoint {
            Endpoint::List => self.list(start),
            Endpoint::Create => self.create(env, start),
            Endpoint::Show => self.show(params.parse("id")?, start),
            Endpoint::Delete => self.delete(params.parse("id")?, start),
        }
    }
}

// guide:start app
impl App for SqliteApi {
    const NAME: &'static str = "sqlite-api";

    /// Runs in each worker process: its own connection to the shared file.
    fn init(config: &Config) -> Result<Self, String> {
        let path = config
            .get("db")
            .ok_or("no database: pass --app-arg db=PATH")?;
        let db = open(path).map_err(|e| format!("db={path}: {e}"))?;
        let router = Router::new()
            .route("/items", Method::GET, Endpoint::List)
            .route("/items", Method::POST, Endpoint::Create)
            .route("/items/{id}", Method::GET, Endpoint::Show)
            .route("/items/{id}", Method::DELETE, Endpoint::Delete);
        Ok(SqliteApi {
            db: Mutex::new(db),
            router,
        })
    }

    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        // The path as the client sent it (an encoded `%2F` stays inside its
        // segment), relative to where the app is mounted; borrowed from the
        // request rather than from `env`, which the handler takes mutably.
        // Not UTF-8 (raw bytes sent): no route matches "".
        let path = std::str::from_utf8(env.raw_path_info()).unwrap_or("");
        match self.router.find(&env.method(), path) {
            Routed::Found(endpoint, params) => self.dispatch(*endpoint, &params, env, start),
            Routed::NotAllowed(allow) => route::method_not_allowed(start, allow),
            Routed::NotFound => Err(api_error(StatusCode::NOT_FOUND, "not found")),
        }
    }
}

abi::export_app!(SqliteApi);
// guide:end app

#[cfg(test)]
mod tests {
    use super::SqliteApi;
    use abi::http::{Request, StatusCode};
    use abi::testing::Client;
    use abi::Config;

    #[test]
    fn in_memory_database() {
        let config = Config::from_pairs([("db", ":memory:")]);
        let client = Client::init::<SqliteApi>(&config).expect("init");
        let created = client.call(
            Request::post("/items")
                .body(r#"{"name":"apples","qty":3}"#)
                .unwrap(),
        );
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(created.headers()["location"], "/items/1");
        let listed = client.call(Request::get("/items").body(()).unwrap());
        assert_eq!(listed.body(), br#"[{"id":1,"name":"apples","qty":3}]"#);
        let Err(why) = Client::init::<SqliteApi>(&Config::default()) else {
            panic!("init without db= should fail");
        };
        assert!(why.contains("--app-arg db=PATH"), "{why}");
    }
}
