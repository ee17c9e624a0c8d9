//! The SDK's http-typed API driven through the in-process [`Client`]: the
//! whole boundary runs (trampolines, gate, body hand-off), only the host is
//! this module's.

use std::io::Read;

use http::{HeaderMap, Method, Request, StatusCode};

use super::*;
use crate::{AbiError, Body, Environ, Error, StartResponse};

struct Routes;

impl App for Routes {
    const NAME: &'static str = "routes";

    fn init(config: &Config) -> Result<Self, String> {
        match config.get("fail") {
            Some(why) => Err(format!("refused: {why}")),
            None => Ok(Routes),
        }
    }

    fn call(&self, env: &mut Environ<'_>, start: &mut StartResponse<'_>) -> Result<Body, Error> {
        match (env.method(), env.uri().path()) {
            (Method::GET, "/types") => {
                let agent = env.headers()["user-agent"].to_str()?.to_owned();
                let accepts = env.headers().get_all("accept").iter().count();
                let query = env.uri().query().unwrap_or("").to_owned();
                start
                    .status(StatusCode::CREATED)
                    .header("content-type", "text/plain")
                    .header("x-agent", &agent)
                    .start()?;
                Ok(Body::from(format!(
                    "agent={agent} accepts={accepts} q={query}"
                )))
            }
            (Method::POST, "/echo") => {
                let mut body = Vec::new();
                env.input().read_to_end(&mut body)?;
                let mut headers = HeaderMap::new();
                headers.insert("content-type", "application/octet-stream".parse()?);
                headers.append("x-n", "1".parse()?);
                headers.append("x-n", "2".parse()?);
                start.start_with(StatusCode::OK, &headers)?;
                Ok(Body::from(body))
            }
            (Method::GET, "/environ") => {
                let mut lines = Vec::new();
                env.for_each(|k, v| {
                    lines.push(format!(
                        "{}={}",
                        String::from_utf8_lossy(k),
                        String::from_utf8_lossy(v)
                    ))
                });
                start.status(StatusCode::OK).start()?;
                Ok(Body::from(lines.join("\n")))
            }
            (Method::GET, "/log") => {
                tracing::info!(user = "ann", "traced-marker");
                env.log(tracing::Level::WARN, "errors-marker");
                start.status(StatusCode::NO_CONTENT).start()?;
                Ok(Body::empty())
            }
            (_, "/missing") => Err(Error::status(StatusCode::NOT_FOUND)),
            (_, "/teapot") => Err(Error::new("no coffee")
                .with_status(StatusCode::IM_A_TEAPOT)
                .with_body("text/plain", "short and stout")),
            (_, "/plain-error") => Err("plain-error-marker".into()),
            (_, "/late-error") => {
                start.status(StatusCode::OK).start()?;
                start.write(b"partial")?;
                Err(Error::status(StatusCode::BAD_GATEWAY))
            }
            (_, "/replaced") => {
                start.status(StatusCode::OK).header("x-old", "1").start()?;
                Err(Error::status(StatusCode::SERVICE_UNAVAILABLE))
            }
            (_, "/unknown-status") => {
                start.status(StatusCode::from_u16(299)?).start()?;
                Ok(Body::from_static(b"odd"))
            }
            (_, "/hop-by-hop") => {
                let refused = start
                    .status(StatusCode::OK)
                    .header("connection", "close")
                    .start();
                assert_eq!(refused, Err(AbiError::Invalid));
                Err(refused.unwrap_err().into())
            }
            (_, "/many-headers") => {
                let names: Vec<String> = (0..40).map(|i| format!("x-h{i}")).collect();
                let mut head = start.status(StatusCode::OK);
                for name in &names {
                    head = head.header(name.as_str(), "v");
                }
                head.start()?;
                Ok(Body::empty())
            }
            (_, "/panic") => panic!("panic-marker"),
            (_, "/stream") => {
                start.status(StatusCode::OK).start()?;
                Ok(Body::from_iter(["a", "b", "c"]))
            }
            _ => Err(Error::status(StatusCode::NOT_FOUND)),
        }
    }
}

fn get(client: &Client, uri: &str) -> Response<Vec<u8>> {
    client.call(Request::get(uri).body(()).unwrap())
}

fn text(response: &Response<Vec<u8>>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

fn logs(response: &Response<Vec<u8>>) -> &Logs {
    response.extensions().get::<Logs>().expect("logs attached")
}

#[test]
fn http_types_and_status_builder() {
    let client = Client::new(Routes);
    let request = Request::get("/types?a=1&b")
        .header("User-Agent", "tester/1")
        .header("accept", "text/plain")
        .header("accept", "*/*")
        .body(())
        .unwrap();
    let response = client.call(request);
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert_eq!(response.headers()["x-agent"], "tester/1");
    assert_eq!(text(&response), "agent=tester/1 accepts=2 q=a=1&b");
}

#[test]
fn start_with_a_header_map_and_input() {
    let client = Client::new(Routes);
    let response = client.call(Request::post("/echo").body("payload").unwrap());
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), b"payload");
    let n: Vec<_> = response.headers().get_all("x-n").iter().collect();
    assert_eq!(n, ["1", "2"]);
}

#[test]
fn the_environ_follows_pep_3333() {
    let client = Client::new(Routes);
    let request = Request::get("http://example.org:8080/environ?x=%20")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("x-two", "1")
        .header("x-two", "2")
        .header("x_under", "dropped")
        .header("content-type", "text/plain")
        .body(())
        .unwrap();
    let response = client.call(request);
    let body = text(&response);
    for line in [
        "REQUEST_METHOD=GET",
        "SCRIPT_NAME=",
        "PATH_INFO=/environ",
        "QUERY_STRING=x=%20",
        "CONTENT_TYPE=text/plain",
        "SERVER_NAME=example.org",
        "SERVER_PORT=8080",
        "SERVER_PROTOCOL=HTTP/1.1",
        "REQUEST_URI=/environ?x=%20",
        "wsgi.url_scheme=http",
        "HTTP_COOKIE=a=1; b=2",
        "HTTP_X_TWO=1, 2",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
    assert!(!body.contains("HTTP_CONTENT_TYPE") && !body.contains("dropped"));
    assert!(!body.contains("CONTENT_LENGTH"), "no body, no length");
    assert!(body.lines().any(|l| l.starts_with("REQUEST_ID=test-")));
    assert_eq!(percent_decode(b"/a%20b%zz%4"), b"/a b%zz%4");
    assert_eq!(
        split_host(b"[::1]:81", "80"),
        (b"[::1]".to_vec(), b"81".to_vec())
    );
    assert_eq!(
        split_host(b"[::1]", "80"),
        (b"[::1]".to_vec(), b"80".to_vec())
    );
}

#[test]
fn logs_of_the_request_are_attached() {
    let client = Client::new(Routes);
    let response = get(&client, "/log");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let logs = logs(&response);
    assert!(logs.contains("errors-marker"), "{logs:?}");
    // The tracing bridge attaches the request (what the real host prints
    // as request_id= and request=), so the line lands in this request.
    assert!(
        logs.0
            .iter()
            .any(|l| l.message == "traced-marker user=ann" && l.level == Level::INFO),
        "{logs:?}"
    );
}

#[test]
fn errors_with_a_status_are_answered() {
    let client = Client::new(Routes);
    let response = get(&client, "/missing");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(text(&response), "Not Found\n");
    assert!(
        !logs(&response).0.iter().any(|l| l.level == Level::ERROR),
        "a 4xx is not an error line"
    );
    let response = get(&client, "/teapot");
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(text(&response), "short and stout");
    assert_eq!(response.headers()["content-type"], "text/plain");
}

#[test]
fn errors_without_a_status_get_the_hosts_500() {
    let client = Client::new(Routes);
    let response = get(&client, "/plain-error");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(text(&response), "500 Internal Server Error\n");
    let line = logs(&response)
        .0
        .iter()
        .find(|l| l.message.contains("plain-error-marker"))
        .cloned()
        .expect("logged");
    assert_eq!(line.level, Level::ERROR);
    assert_eq!(line.message, "routes: call failed: plain-error-marker");

    let response = get(&client, "/panic");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(logs(&response).contains("panic-marker"));
}

#[test]
fn an_error_after_start_replaces_the_head_or_aborts() {
    let client = Client::new(Routes);
    let response = get(&client, "/replaced");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("x-old").is_none());
    assert_eq!(text(&response), "Service Unavailable\n");

    let response = get(&client, "/late-error");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.body(), b"partial");
    assert_eq!(response.extensions().get::<Aborted>(), Some(&Aborted));
    assert!(logs(&response).contains("the headers were sent already"));
}

#[test]
fn status_lines_and_header_limits() {
    let client = Client::new(Routes);
    let response = get(&client, "/unknown-status");
    assert_eq!(response.status().as_u16(), 299);
    assert_eq!(response.body(), b"odd");
    assert_eq!(
        crate::sdk::response::StatusLine::new(StatusCode::OK).as_bytes(),
        b"200 OK"
    );
    assert_eq!(
        crate::sdk::response::StatusLine::new(StatusCode::from_u16(299).unwrap()).as_bytes(),
        b"299 "
    );
    let response = get(&client, "/hop-by-hop");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let response = get(&client, "/many-headers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().len(), 40);
    assert_eq!(response.headers()["x-h39"], "v");
}

#[test]
fn streams_and_head_requests() {
    let client = Client::new(Routes);
    assert_eq!(get(&client, "/stream").body(), b"abc");
    let head = client.call(Request::head("/stream").body(()).unwrap());
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.body().is_empty());
}

#[test]
fn init_through_the_descriptor() {
    let client = Client::init::<Routes>(&Config::default()).expect("init");
    assert_eq!(get(&client, "/missing").status(), StatusCode::NOT_FOUND);
    let refused = Client::init::<Routes>(&Config::from_pairs([("fail", "x")])).unwrap_err();
    assert_eq!(refused, "refused: x");
}

/// An app that shapes every error as JSON.
struct JsonErrors;

impl App for JsonErrors {
    fn init(_: &Config) -> Result<Self, String> {
        Ok(JsonErrors)
    }

    fn call(&self, env: &mut Environ<'_>, _: &mut StartResponse<'_>) -> Result<Body, Error> {
        match env.path_info() {
            b"/missing" => Err(StatusCode::NOT_FOUND.into()),
            _ => Err("database down".into()),
        }
    }

    fn render_error(&self, error: &Error) -> Option<Response<Vec<u8>>> {
        let status = error
            .status_code()
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!(r#"{{"status":{}}}"#, status.as_u16());
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .ok()
    }
}

#[test]
fn render_error_shapes_every_error() {
    let client = Client::new(JsonErrors);
    let response = get(&client, "/missing");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.body(), br#"{"status":404}"#);
    let response = get(&client, "/other");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.body(), br#"{"status":500}"#);
    assert!(logs(&response).contains("database down"), "still logged");
}

#[cfg(feature = "json")]
#[test]
fn serde_json_errors_convert() {
    fn parse(input: &str) -> Result<serde_json::Value, Error> {
        Ok(serde_json::from_str(input)?)
    }
    let bad = parse("{").unwrap_err();
    assert_eq!(bad.status_code(), Some(StatusCode::BAD_REQUEST));
    assert!(bad.message().starts_with("JSON: "), "{bad}");
    let mut map = std::collections::HashMap::new();
    map.insert(vec![1u8], 1);
    let unserialisable: Error = serde_json::to_vec(&map).unwrap_err().into();
    assert_eq!(unserialisable.status_code(), None, "our fault: a 500");
    let with = Error::status(StatusCode::CONFLICT).with_json(&serde_json::json!({"id": 7}));
    let response = with.to_response().unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.body(), br#"{"id":7}"#);
}

#[cfg(feature = "anyhow")]
#[test]
fn anyhow_errors_convert_with_their_chain() {
    fn fails() -> Result<(), Error> {
        let e = anyhow::anyhow!("root cause").context("while loading");
        Err(e)?
    }
    assert_eq!(fails().unwrap_err().message(), "while loading: root cause");
}
