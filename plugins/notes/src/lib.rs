//! `notes`: a small JSON API on the Rust SDK's `http` types, the example
//! for "Writing a plugin in Rust" and what `tests/sdk.rs` serves.
//!
//!   POST /notes        body `{"text": "..."}` -> 201, `Location: /notes/<id>`,
//!                      `{"id": <id>, "text": "..."}`; not JSON (or no text)
//!                      -> 400 `{"error": ...}`
//!   GET  /notes/<id>   200 `{"id": .., "text": ..}`, or 404 `{"error": ..}`
//!   GET  /whoami       200 `{"method", "path", "query", "agent"}` from
//!                      `Environ::method/uri/headers`; logs one tracing line
//!   GET  /boom         an error with no status: the app renders its own 500
//!   anything else      404 `{"error": "not found"}`
//!
//! Every error goes through `render_error`, so clients always get JSON.
#![forbid(unsafe_code)]

use std::io::Read;
use std::sync::Mutex;

use abi::http::{Method, Response, StatusCode};
use abi::{App, Body, Config, Environ, Error, StartResponse};
use serde_json::{json, Value};

/// The notes, by id (the index).
pub struct Notes {
    notes: Mutex<Vec<String>>,
}

impl Notes {
    // guide:start create
    fn create(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let mut input = Vec::new();
        env.input().read_to_end(&mut input)?;
        // Not JSON: `?` makes it a 400 (see `From<serde_json::Error>`).
        let doc: Value = serde_json::from_slice(&input)?;
        let Some(text) = doc.get("text").and_then(Value::as_str) else {
            return Err(Error::status(StatusCode::BAD_REQUEST).with_message("no \"text\""));
        };
        let id = {
            let mut notes = self.notes.lock().map_err(|_| "notes lock poisoned")?;
            notes.push(text.to_owned());
            notes.len() - 1
        };
        let location = format!("/notes/{id}");
        start
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .header("location", &location)
            .start()?;
        Ok(Body::from(json!({ "id": id, "text": text }).to_string()))
    }
    // guide:end create

    fn read(&self, id: &str, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let not_found = || Error::status(StatusCode::NOT_FOUND);
        let id: usize = id.parse().map_err(|_| not_found())?;
        let text = {
            let notes = self.notes.lock().map_err(|_| "notes lock poisoned")?;
            notes.get(id).cloned().ok_or_else(not_found)?
        };
        json_ok(start, &json!({ "id": id, "text": text }))
    }
}

/// 200 with `value` as JSON.
fn json_ok(start: &mut StartResponse<'_>, value: &Value) -> Result<Body, Error> {
    start
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .start()?;
    Ok(Body::from(value.to_string()))
}

impl App for Notes {
    const NAME: &'static str = "notes";

    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Notes {
            notes: Mutex::new(Vec::new()),
        })
    }

    // guide:start call
    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        let method = env.method();
        let path = env.uri().path().to_owned();
        match (method, path.as_str()) {
            (Method::POST, "/notes") => self.create(env, start),
            (Method::GET, p) if p.starts_with("/notes/") => self.read(&p[7..], start),
            (Method::GET, "/whoami") => {
                let agent = env
                    .headers()
                    .get("user-agent")
                    .map(|v| v.to_str())
                    .transpose()?;
                // Reaches the host's log with this request's id and line.
                abi::tracing::info!(agent = agent.unwrap_or("-"), "notes-whoami");
                json_ok(
                    start,
                    &json!({
                        "method": env.method().as_str(),
                        "path": path,
                        "query": env.uri().query(),
                        "agent": agent,
                    }),
                )
            }
            (Method::GET, "/boom") => Err("notes-boom: the database is down".into()),
            _ => Err(Error::status(StatusCode::NOT_FOUND)),
        }
    }
    // guide:end call

    // guide:start render_error
    /// Every error as JSON: the error's status (500 when it has none) and,
    /// for a 4xx, its message; a 500 says no more than "internal error"
    /// (the message is in the log).
    fn render_error(&self, error: &Error) -> Option<Response<Vec<u8>>> {
        let status = error
            .status_code()
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if status.is_client_error() {
            error.message()
        } else {
            "internal error"
        };
        let body = json!({ "error": message, "status": status.as_u16() });
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .ok()
    }
    // guide:end render_error
}

abi::export_app!(Notes);

// guide:start tests
#[cfg(test)]
mod tests {
    use super::*;
    use abi::http::Request;
    use abi::testing::Client;

    fn json(response: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(response.body()).expect("a JSON body")
    }

    #[test]
    fn create_then_read() {
        let client = Client::init::<Notes>(&Config::default()).unwrap();
        let created = client.call(Request::post("/notes").body(r#"{"text":"hi"}"#).unwrap());
        assert_eq!(created.status(), StatusCode::CREATED);
        assert_eq!(created.headers()["location"], "/notes/0");
        assert_eq!(json(&created), json!({"id": 0, "text": "hi"}));
        let read = client.call(Request::get("/notes/0").body(()).unwrap());
        assert_eq!(json(&read), json!({"id": 0, "text": "hi"}));
    }

    #[test]
    fn errors_are_json() {
        let client = Client::init::<Notes>(&Config::default()).unwrap();
        let bad = client.call(Request::post("/notes").body("{oops").unwrap());
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(json(&bad)["error"].as_str().unwrap().starts_with("JSON: "));
        let missing = client.call(Request::get("/notes/9").body(()).unwrap());
        assert_eq!(
            json(&missing),
            json!({"error": "404 Not Found", "status": 404})
        );
        let boom = client.call(Request::get("/boom").body(()).unwrap());
        assert_eq!(boom.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            json(&boom),
            json!({"error": "internal error", "status": 500})
        );
        let logs = boom.extensions().get::<abi::testing::Logs>().unwrap();
        assert!(logs.contains("notes-boom"), "{logs:?}");
    }
}
// guide:end tests
