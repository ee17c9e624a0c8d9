//! `todo-raw`: the JSON TODO API of `plugins/todo-axum`, written with the
//! raw SDK (`App`, `abi::route`, `abi::query`, `Error`), served by `host`.
//!
//! * `GET /todos?done=true&q=milk&limit=10`, `POST /todos` `{"title": ..}`
//! * `GET|PATCH|DELETE /todos/{id}` (`PATCH` takes `title` and/or `done`)
//! * `GET /events?n=3`: server-sent events, one every 50 ms
//! * `GET /health`
//!
//! `--app-arg max_todos=N` caps the list (default 1000).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::sleep;
use std::time::Duration;

use abi::http::{Method, StatusCode};
use abi::route::{self, Params, Routed, Router};
use abi::{query, App, Body, Config, Environ, Error, StartResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Request bodies larger than this are refused with 413.
const BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone, Serialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Default)]
struct Store {
    next_id: u64,
    todos: BTreeMap<u64, Todo>,
}

// guide:start handler
type Handler =
    fn(&TodoRaw, &mut Environ<'_>, &mut StartResponse<'_>, &Params) -> Result<Body, Error>;

pub struct TodoRaw {
    router: Router<Handler>,
    // Shared with the event streams, which outlive the `call` that made them.
    store: Arc<Mutex<Store>>,
    max_todos: usize,
}
// guide:end handler

/// A handler that panicked mid-update left nothing half-written (every
/// update is one insert or remove), so poisoning is ignored.
fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

// guide:start api_error
/// An error answered as `{"error": message}` with `status`.
fn api_error(status: StatusCode, message: impl std::fmt::Display) -> Error {
    let message = message.to_string();
    Error::status(status).with_json(&json!({ "error": message }))
}

fn not_found(id: u64) -> Error {
    api_error(StatusCode::NOT_FOUND, format_args!("no todo {id}"))
}
// guide:end api_error

fn valid_title(title: &str) -> Result<String, Error> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        let why = "title must be 1 to 200 characters";
        return Err(api_error(StatusCode::UNPROCESSABLE_ENTITY, why));
    }
    Ok(title.to_owned())
}

// guide:start read_json
/// The request's JSON body: 415 if it does not say it is JSON, 413 over
/// [`BODY_LIMIT`], 400 if it does not parse, 422 if it is not a `T`.
fn read_json<T: for<'de> Deserialize<'de>>(env: &mut Environ<'_>) -> Result<T, Error> {
    if !env.content_type().starts_with(b"application/json") {
        let why = "expected Content-Type: application/json";
        return Err(api_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, why));
    }
    let too_large = || api_error(StatusCode::PAYLOAD_TOO_LARGE, "body over 64 KiB");
    if std::str::from_utf8(env.content_length())
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .is_some_and(|n| n > BODY_LIMIT)
    {
        return Err(too_large());
    }
    // Chunked bodies have no length to check first: read one byte past it.
    let mut body = Vec::new();
    let limit = BODY_LIMIT as u64 + 1;
    env.input().take(limit).read_to_end(&mut body)?;
    if body.len() > BODY_LIMIT {
        return Err(too_large());
    }
    serde_json::from_slice(&body).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        api_error(status, e)
    })
}
// guide:end read_json

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

// guide:start query_param
/// A query parameter parsed as `T`, or a 400 naming it.
fn query_param<T: std::str::FromStr>(env: &Environ<'_>, name: &str) -> Result<Option<T>, Error> {
    match query::get(env.query_string(), name) {
        None => Ok(None),
        Some(value) => value.parse().map(Some).map_err(|_| {
            api_error(
                StatusCode::BAD_REQUEST,
                format_args!("bad {name}={value:?}"),
            )
        }),
    }
}
// guide:end query_param

// guide:start list
fn list(
    api: &TodoRaw,
    env: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    _: &Params,
) -> Result<Body, Error> {
    let done: Option<bool> = query_param(env, "done")?;
    let q = query::get(env.query_string(), "q");
    let limit: Option<usize> = query_param(env, "limit")?;
    let store = lock(&api.store);
    let todos: Vec<&Todo> = store
        .todos
        .values()
        .filter(|t| done.is_none_or(|done| t.done == done))
        .filter(|t| q.as_ref().is_none_or(|q| t.title.contains(q.as_ref())))
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    respond_json(start, StatusCode::OK, &todos)
}
// guide:end list

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

fn create(
    api: &TodoRaw,
    env: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    _: &Params,
) -> Result<Body, Error> {
    let new: NewTodo = read_json(env)?;
    let title = valid_title(&new.title)?;
    let mut store = lock(&api.store);
    if store.todos.len() >= api.max_todos {
        let why = format!("at most {} todos", api.max_todos);
        return Err(api_error(StatusCode::CONFLICT, why));
    }
    store.next_id += 1;
    let todo = Todo {
        id: store.next_id,
        title,
        done: false,
    };
    store.todos.insert(todo.id, todo.clone());
    respond_json(start, StatusCode::CREATED, &todo)
}

fn show(
    api: &TodoRaw,
    _: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    params: &Params,
) -> Result<Body, Error> {
    let id = params.parse("id")?;
    let todo = lock(&api.store).todos.get(&id).cloned();
    respond_json(start, StatusCode::OK, &todo.ok_or_else(|| not_found(id))?)
}

#[derive(Deserialize)]
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

fn update(
    api: &TodoRaw,
    env: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    params: &Params,
) -> Result<Body, Error> {
    let id = params.parse("id")?;
    let changes: Changes = read_json(env)?;
    let title = changes.title.as_deref().map(valid_title).transpose()?;
    let mut store = lock(&api.store);
    let todo = store.todos.get_mut(&id).ok_or_else(|| not_found(id))?;
    if let Some(title) = title {
        todo.title = title;
    }
    if let Some(done) = changes.done {
        todo.done = done;
    }
    respond_json(start, StatusCode::OK, todo)
}

fn remove(
    api: &TodoRaw,
    _: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    params: &Params,
) -> Result<Body, Error> {
    let id = params.parse("id")?;
    lock(&api.store)
        .todos
        .remove(&id)
        .ok_or_else(|| not_found(id))?;
    start.status(StatusCode::NO_CONTENT).start()?;
    Ok(Body::empty())
}

// guide:start events
/// `n` events (default 3), 50 ms apart, each with the number of todos.
/// Each item of the body iterator is one chunk, sent when it is produced;
/// the sleeps hold this app thread (see the guide's SSE chapter).
fn events(
    api: &TodoRaw,
    env: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    _: &Params,
) -> Result<Body, Error> {
    let n: u32 = query_param(env, "n")?.unwrap_or(3).min(100);
    let store = Arc::clone(&api.store);
    start
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .start()?;
    Ok(Body::from_iter((0..n).map(move |i| {
        if i > 0 {
            sleep(Duration::from_millis(50));
        }
        let count = lock(&store).todos.len();
        let data = json!({ "tick": i, "todos": count });
        format!("event: tick\nid: {i}\ndata: {data}\n\n")
    })))
}
// guide:end events

fn health(
    _: &TodoRaw,
    _: &mut Environ<'_>,
    start: &mut StartResponse<'_>,
    _: &Params,
) -> Result<Body, Error> {
    start.start("200 OK", &[("Content-Type", "text/plain; charset=utf-8")])?;
    Ok(Body::from_static(b"ok\n"))
}

// guide:start app
impl App for TodoRaw {
    const NAME: &'static str = "todo-raw";

    /// The `--app-arg`s are the configuration; the routes are built once.
    fn init(config: &Config) -> Result<Self, String> {
        let max_todos = match config.get("max_todos") {
            None => 1000,
            Some(v) => v.parse().map_err(|e| format!("max_todos={v:?}: {e}"))?,
        };
        let router = Router::new()
            .route("/health", Method::GET, health as Handler)
            .route("/todos", Method::GET, list)
            .route("/todos", Method::POST, create)
            .route("/todos/{id}", Method::GET, show)
            .route("/todos/{id}", Method::PATCH, update)
            .route("/todos/{id}", Method::DELETE, remove)
            .route("/events", Method::GET, events);
        Ok(TodoRaw {
            router,
            store: Arc::default(),
            max_todos,
        })
    }

    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        // The path as the client sent it (an encoded `%2F` stays inside its
        // segment), relative to where the app is mounted; borrowed from the
        // request rather than from `env`, which the handler takes mutably.
        // Not UTF-8 (raw bytes sent): no route matches "".
        let path = std::str::from_utf8(env.raw_path_info()).unwrap_or("");
        match self.router.find(&env.method(), path) {
            Routed::Found(handler, params) => handler(self, env, start, &params),
            Routed::NotAllowed(allow) => route::method_not_allowed(start, allow),
            Routed::NotFound => {
                start.status(StatusCode::NOT_FOUND).start()?;
                Ok(Body::empty())
            }
        }
    }
}

abi::export_app!(TodoRaw);
// guide:end app

#[cfg(test)]
mod tests {
    use super::TodoRaw;
    use abi::http::{Request, StatusCode};
    use abi::testing::Client;
    use abi::Config;

    #[test]
    fn created_todos_are_listed() {
        let client = Client::init::<TodoRaw>(&Config::default()).expect("init");
        let created = client.call(
            Request::post("/todos")
                .header("content-type", "application/json")
                .body(r#"{"title":"write tests"}"#)
                .unwrap(),
        );
        assert_eq!(created.status(), StatusCode::CREATED, "{created:?}");
        let listed = client.call(Request::get("/todos?q=write+t").body(()).unwrap());
        assert_eq!(
            listed.body().as_slice(),
            br#"[{"id":1,"title":"write tests","done":false}]"#
        );
        let bad = Config::from_pairs([("max_todos", "lots")]);
        let Err(refused) = Client::init::<TodoRaw>(&bad) else {
            panic!("init should refuse max_todos=lots");
        };
        assert!(refused.contains("max_todos"), "{refused}");
    }
}
