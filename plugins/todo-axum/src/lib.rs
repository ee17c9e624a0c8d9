//! `todo-axum`: a JSON TODO API written with axum, served by `host`.
//!
//! An ordinary axum application: `build` returns the `Router` that `main`
//! would hand to `axum::serve`, and `abi::export_service!(build)` makes it a
//! plugin (`cargo build -p todo-axum --release`, then
//! `host serve target/release/libtodo_axum.so`).
//!
//! * `GET /todos?done=true&q=milk&limit=10`, `POST /todos` `{"title": ..}`
//! * `GET|PATCH|DELETE /todos/{id}` (`PATCH` takes `title` and/or `done`)
//! * `GET /events?n=3`: server-sent events, one every 50 ms
//! * `GET /health`
//!
//! `--app-arg max_todos=N` caps the list (default 1000); `--app-arg
//! debug=1` adds `/debug/sleep?ms=N` and `/debug/panic`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::json;

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

#[derive(Clone)]
struct AppState {
    store: Arc<Mutex<Store>>,
    max_todos: usize,
}

impl AppState {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A handler that panicked mid-update left nothing half-written
        // (every update is one insert or remove), so poisoning is ignored.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum ApiError {
    NotFound(u64),
    Invalid(&'static str),
    Full(usize),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound(id) => (StatusCode::NOT_FOUND, format!("no todo {id}")),
            ApiError::Invalid(why) => (StatusCode::UNPROCESSABLE_ENTITY, why.to_owned()),
            ApiError::Full(max) => (StatusCode::CONFLICT, format!("at most {max} todos")),
        };
        (status, Json(json!({ "error": message }))).into_response()
    }
}

fn valid_title(title: &str) -> Result<String, ApiError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::Invalid("title must be 1 to 200 characters"));
    }
    Ok(title.to_owned())
}

#[derive(Deserialize)]
struct ListQuery {
    done: Option<bool>,
    q: Option<String>,
    limit: Option<usize>,
}

async fn list(State(state): State<AppState>, Query(query): Query<ListQuery>) -> Json<Vec<Todo>> {
    let store = state.store();
    let todos = store
        .todos
        .values()
        .filter(|t| query.done.is_none_or(|done| t.done == done))
        .filter(|t| {
            query
                .q
                .as_ref()
                .is_none_or(|q| t.title.contains(q.as_str()))
        })
        .take(query.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    Json(todos)
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
}

// guide:start create
async fn create(
    State(state): State<AppState>,
    Json(new): Json<NewTodo>,
) -> Result<(StatusCode, Json<Todo>), ApiError> {
    let title = valid_title(&new.title)?;
    let mut store = state.store();
    if store.todos.len() >= state.max_todos {
        return Err(ApiError::Full(state.max_todos));
    }
    store.next_id += 1;
    let todo = Todo {
        id: store.next_id,
        title,
        done: false,
    };
    store.todos.insert(todo.id, todo.clone());
    Ok((StatusCode::CREATED, Json(todo)))
}
// guide:end create

async fn show(State(state): State<AppState>, Path(id): Path<u64>) -> Result<Json<Todo>, ApiError> {
    let store = state.store();
    store
        .todos
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or(ApiError::NotFound(id))
}

#[derive(Deserialize)]
struct Changes {
    title: Option<String>,
    done: Option<bool>,
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<u64>,
    Json(changes): Json<Changes>,
) -> Result<Json<Todo>, ApiError> {
    let title = changes.title.as_deref().map(valid_title).transpose()?;
    let mut store = state.store();
    let todo = store.todos.get_mut(&id).ok_or(ApiError::NotFound(id))?;
    if let Some(title) = title {
        todo.title = title;
    }
    if let Some(done) = changes.done {
        todo.done = done;
    }
    Ok(Json(todo.clone()))
}

async fn remove(
    State(state): State<AppState>,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    match state.store().todos.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(id)),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    n: Option<u32>,
}

/// `n` events (default 3), 50 ms apart, each with the number of todos.
async fn events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let n = query.n.unwrap_or(3).min(100);
    Sse::new(stream::unfold(0, move |i| {
        let state = state.clone();
        async move {
            if i == n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let count = state.store().todos.len();
            let event = Event::default()
                .event("tick")
                .id(i.to_string())
                .data(json!({ "tick": i, "todos": count }).to_string());
            Some((Ok(event), i + 1))
        }
    }))
}

#[derive(Deserialize)]
struct SleepQuery {
    ms: u64,
}

async fn panic_route() -> &'static str {
    panic!("asked to panic")
}

fn debug_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/debug/sleep",
            get(|Query(q): Query<SleepQuery>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms)).await;
                format!("slept {} ms\n", q.ms)
            }),
        )
        .route("/debug/panic", get(panic_route))
}

// guide:start build
/// What `main` would build before `axum::serve`; the `--app-arg`s are the
/// configuration.
fn build(config: &abi::Config) -> Result<Router, String> {
    let max_todos = match config.get("max_todos") {
        None => 1000,
        Some(v) => v.parse().map_err(|e| format!("max_todos={v:?}: {e}"))?,
    };
    let state = AppState {
        store: Arc::default(),
        max_todos,
    };
    let mut app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/todos", get(list).post(create))
        .route("/todos/{id}", get(show).patch(update).delete(remove))
        .route("/events", get(events));
    if config.get("debug") == Some("1") {
        app = app.merge(debug_routes());
    }
    Ok(app
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(state))
}

abi::export_service!(build);
// guide:end build

#[cfg(test)]
mod tests {
    use abi::http::{Request, StatusCode};
    use abi::testing::Client;
    use abi::Config;

    /// The exported router, run in-process as the host runs it.
    #[test]
    fn created_todos_are_listed() {
        let client = Client::service(super::build, &Config::default()).expect("build");
        let health = client.call(Request::get("/health").body(()).unwrap());
        assert_eq!(
            (health.status(), health.body().as_slice()),
            (StatusCode::OK, &b"ok\n"[..])
        );
        let created = client.call(
            Request::post("/todos")
                .header("content-type", "application/json")
                .body(r#"{"title":"write tests"}"#)
                .unwrap(),
        );
        assert_eq!(created.status(), StatusCode::CREATED, "{created:?}");
        let listed = client.call(Request::get("/todos").body(()).unwrap());
        let text = String::from_utf8_lossy(listed.body());
        assert!(text.contains("write tests"), "{text}");
        let bad = Config::from_pairs([("max_todos", "lots")]);
        let Err(refused) = Client::service(super::build, &bad) else {
            panic!("build should refuse max_todos=lots");
        };
        assert!(refused.contains("max_todos"), "{refused}");
    }
}
