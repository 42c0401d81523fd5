//! The OpenAPI 3.1 description served at `/openapi.json`. Its `paths` are exactly the route
//! table's rows, and each operation's security is its row's access (the tests check both and
//! call every operation).

use serde_json::{Value, json};

use super::auth::Access;
use super::route::Route;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// An error answer that tells the client when to retry.
fn retry_response(description: &str) -> Value {
    let mut r = error_response(description);
    r["headers"] = json!({"Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": true,
        "schema": {"type": "integer", "minimum": 0}
    }});
    r
}

/// `503`, which any request can get: the connection cap is reached (`Server is busy, retry
/// later`), a queue is full, or the server is stopping.
fn unavailable() -> Value {
    retry_response(
        "Nothing was done: the server is at its connection limit, a queue is full (`Server is \
         busy, retry later`), the event store failed a write (`Event store unavailable`) or the \
         server is stopping (`Server is shutting down`). Retry after `Retry-After` seconds.",
    )
}

/// `507` of the routes that write to the event store.
fn insufficient_storage() -> Value {
    retry_response(
        "`Insufficient storage`: the event store's disk is full; nothing was written. Retry \
         after `Retry-After` seconds.",
    )
}

/// `408` of the routes that read a request body.
fn body_timeout() -> Value {
    error_response(
        "`Request body timeout`: the body did not arrive within the server's body timeout.",
    )
}

/// `500` of the routes that write through the event store's writer.
fn store_error() -> Value {
    error_response("`Store error`: the event store failed; nothing was changed.")
}

/// `500` of the routes that read the event store.
fn read_error() -> Value {
    error_response("`Failed to retrieve events`: the event store failed to answer.")
}

fn ingest_responses() -> Value {
    json!({
        "200": {
            "description": "Every event of the request was accepted: committed to the event \
                store (ack mode `durable`, the default) or queued (`queued`).",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}}
        },
        "400": error_response(
            "Nothing was stored. `error` is `Invalid JSON format` (the body does not decode), \
             `Invalid event format` (/batch: an element does not decode), `Event key is \
             required`, `Event key is too long`, `Event data is too large`, `Invalid event data`, \
             `Invalid event id` or `Invalid event key` (a key the metrics store reserves or \
             refuses, or an event time outside its calendar); `index` names the event."),
        "408": body_timeout(),
        "413": error_response(
            "Nothing was stored: `Request body is too large` or `Too many events in one request`."),
        "503": retry_response(
            "Nothing was stored: the ingest queue is full (`Server is busy, retry later`), the \
             event store failed a write (`Event store unavailable`) or the server is stopping. \
             Retry after `Retry-After` seconds."),
        "507": insufficient_storage()
    })
}

/// The document of the routes in `routes`, as JSON text.
pub(crate) fn document<S>(routes: &[Route<S>]) -> String {
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "accrue collector",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Tlytics-compatible event collector. A POST stores all of its events \
                or none. Content-Type is not checked."
        },
        "paths": {
            "/events": {"post": {
                "operationId": "postEvents",
                "summary": "Store a JSON array of events.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "oneOf": [
                        {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                        {"type": "null"}
                    ]
                }}}},
                "responses": ingest_responses()
            }},
            "/batch": {"post": {
                "operationId": "postBatch",
                "summary": "Store the events of an {\"events\": [...]} object.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "oneOf": [
                        {"type": "object", "properties": {"events": {"oneOf": [
                            {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                            {"type": "null"}
                        ]}}},
                        {"type": "null"}
                    ]
                }}}},
                "responses": ingest_responses()
            }},
            "/health": {"get": {
                "operationId": "health",
                "summary": "Liveness: always healthy while the process serves requests.",
                "responses": {"200": {"description": "Alive.", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["port", "status"], "properties": {
                        "port": {"type": "integer"},
                        "status": {"const": "healthy"}
                    }}
                }}}}
            }},
            "/ready": {"get": {
                "operationId": "ready",
                "summary": "Readiness: the event store answers and its last write succeeded.",
                "responses": {
                    "200": {"description": "Ready.", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"status": {"const": "ready"}}
                    }}}},
                    "503": {"description": "Not ready; `detail` says why (or the connection \
                        cap's `Server is busy, retry later`).", "content": {
                        "application/json": {"schema": {"type": "object", "properties": {
                            "status": {"const": "unavailable"}, "detail": {"type": "string"}
                        }}}
                    }}
                }
            }},
            "/view": {"get": {
                "operationId": "view",
                "summary": "Stored events, newest event time first (ties: newest first).",
                "description": "Unusable `page`/`page_size` values fall back to 1 and 10; \
                    `page_size` above 1000 is clamped to 1000.",
                "parameters": [
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
                    {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}},
                    {"name": "key", "in": "query", "description": "Only events with this key.", "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "One page.", "content": {"application/json": {"schema": {
                        "type": "object",
                        "required": ["events", "page", "page_size", "total", "total_pages"],
                        "properties": {
                            "events": {"type": "array", "items": {"$ref": "#/components/schemas/StoredEvent"}},
                            "page": {"type": "integer"},
                            "page_size": {"type": "integer"},
                            "total": {"type": "integer"},
                            "total_pages": {"type": "integer"}
                        }
                    }}}},
                    "500": read_error()
                }
            }},
            "/v1/values": {"get": {
                "operationId": "values",
                "summary": "A timeline of one event key from the metrics store.",
                "description": "Every stored event is counted per key and bucket, and the numeric \
                    fields of its data are summed: each bucket is {\"count\": n, \"data\": {...}}, \
                    or {} when nothing was stored. Bucket starts are in the configured time zone.",
                "parameters": [
                    {"name": "key", "in": "query", "required": true, "schema": {"type": "string", "minLength": 1}},
                    {"name": "from", "in": "query", "description": "RFC 3339; default: 24 hours before `to`.", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "to", "in": "query", "description": "RFC 3339; default: now.", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "granularity", "in": "query",
                        "description": "A count and a unit (s m h d w mo q y), e.g. 1h; default: the first configured.",
                        "schema": {"type": "string", "pattern": "^[1-9][0-9]{0,8}(s|m|h|d|w|mo|q|y)$"}},
                    {"name": "skip_blanks", "in": "query", "schema": {"type": "boolean", "default": false}}
                ],
                "responses": {
                    "200": {"description": "Parallel lists of bucket starts and values.", "content": {"application/json": {"schema": {
                        "type": "object", "required": ["at", "values"],
                        "properties": {
                            "at": {"type": "array", "items": {"type": "string", "format": "date-time"}},
                            "values": {"type": "array", "items": {"type": "object"}}
                        }
                    }}}},
                    "400": error_response("`Invalid query`: a missing key, a bad instant or granularity, too many buckets."),
                    "404": error_response("The metrics pipeline is disabled on this server."),
                    "500": error_response("`Failed to retrieve values`.")
                }
            }},
            "/metrics": {"get": {
                "operationId": "metrics",
                "summary": "The server's counters in the Prometheus text format 0.0.4.",
                "responses": {"200": {"description": "Counters.", "content": {
                    "text/plain": {"schema": {"type": "string"}}
                }}}
            }},
            "/openapi.json": {"get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": {"description": "OpenAPI 3.1.", "content": {
                    "application/json": {"schema": {"type": "object"}}
                }}}
            }}
        },
        "components": {"schemas": {
            "Event": {
                "type": "object",
                "required": ["key"],
                "description": "Field names match case-insensitively; unknown fields are ignored. \
                    The limits are the defaults (`accrue serve --help`).",
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 256,
                        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
                        "description": "At most 256 bytes of UTF-8; with the metrics pipeline on, no \
                            control characters and none of the keys it reserves."},
                    "timestamp": {"type": ["string", "null"], "format": "date-time",
                        "description": "RFC 3339 between 1677-09-21T00:12:44Z and \
                            2262-04-11T23:47:16Z; missing, null or 0001-01-01T00:00:00Z means the \
                            server's clock."},
                    "data": {"type": ["object", "null"], "description": "Stored as received: at \
                        most 64 KiB without whitespace, nested at most 32 deep, numbers within a \
                        64-bit float."},
                    "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 128,
                        "description": "Idempotency id of 1 to 128 bytes: an event whose id is \
                            already stored is skipped and counted in `duplicates`."}
                }
            },
            "StoredEvent": {
                "type": "object",
                "required": ["key", "timestamp", "data"],
                "properties": {
                    "key": {"type": "string"},
                    "timestamp": {"type": "string", "format": "date-time",
                        "description": "In the offset it was sent with (Z for UTC), fraction trimmed."},
                    "data": {"type": ["object", "null"]}
                }
            },
            "Accepted": {
                "type": "object",
                "required": ["count", "message"],
                "properties": {
                    "count": {"type": "integer", "description": "Events in the request."},
                    "duplicates": {"type": "integer", "description": "Events skipped because their id was already stored (only when > 0)."},
                    "message": {"type": "string", "examples": ["Successfully queued 2 events"]}
                }
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "detail": {"type": "string"},
                    "index": {"type": "integer", "description": "Position of the offending event."}
                }
            }
        }}
    });
    add_queries_kv_live_keys(&mut doc);
    add_security(&mut doc, routes);
    add_unavailable(&mut doc);
    doc.to_string()
}

// --- queries, KV, live feeds, API keys ------------------------------------------------------

fn param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": schema})
}

fn path_param(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description,
        "schema": schema})
}

/// A KV namespace or key: 1 to 256 bytes of UTF-8 without control characters (a longer one
/// gets `400`; `maxLength` counts characters, so it bounds but does not pin the limit).
fn kv_name(what: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 256,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
        "description": format!("The {what}: 1 to 256 bytes of UTF-8, no control characters.")})
}

/// The KV routes' `{ns}`.
fn ns_param() -> Value {
    path_param("ns", "The namespace.", kv_name("namespace"))
}

/// The KV routes' `{*key}`: the rest of the path, so the key may contain `/`.
fn key_param() -> Value {
    path_param(
        "*key",
        "The key: the rest of the path, so it may contain `/`.",
        kv_name("key"),
    )
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn where_param() -> Value {
    json!({"name": "where", "in": "query", "style": "form", "explode": true,
        "description": "Repeatable, all must hold: `PATH OP VALUE` on the event's data, e.g. \
                `user.plan=pro`, `temp>=20.5`, `ok=true`, `name~smith`. OP is one of = != < <= > >= ~ \
                (contains); VALUE is a JSON literal or bare text; comparisons are typed.",
        "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 8}})
}

fn page_of_events(description: &str) -> Value {
    ok(
        description,
        json!({"type": "object", "required": ["events", "next_cursor"], "properties": {
            "events": {"type": "array", "items": {"$ref": "#/components/schemas/QueriedEvent"}},
            "next_cursor": {"type": ["string", "null"],
                "description": "Pass as `cursor` for the next page; null on the last page."}
        }}),
    )
}

/// The query, KV, live-feed and key-management routes.
fn add_queries_kv_live_keys(doc: &mut Value) {
    let bad = error_response(
        "`Invalid query`: a parameter is unknown, repeated or malformed; \
        `detail` says which.",
    );
    let paths = json!({
        "/v1/events": {
            "get": {
                "operationId": "queryRange",
                "summary": "The events of one key in a time range, keyset-paged.",
                "parameters": [
                    {"name": "key", "in": "query", "required": true, "description": "The event key.",
                        "schema": {"type": "string", "minLength": 1}},
                    param("from", "RFC 3339, inclusive; default: the beginning.", json!({"type": "string", "format": "date-time"})),
                    param("to", "RFC 3339, inclusive; default: the end.", json!({"type": "string", "format": "date-time"})),
                    param("limit", "Events per page.", json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 100})),
                    param("order", "By event time, then id.", json!({"enum": ["asc", "desc"], "default": "asc"})),
                    param("cursor", "The previous page's `next_cursor`.", json!({"type": "string"})),
                    where_param()
                ],
                "responses": {"200": page_of_events("One page."), "400": bad.clone(),
                    "500": read_error()}
            },
            "delete": {
                "operationId": "deleteEvents",
                "summary": "Delete one key's events, or those of every key with a prefix.",
                "description": "Exactly one of `key` and `prefix`. Runs in chunks of 10 000 rows \
                through the writer. With the metrics pipeline on, the aggregated metrics are \
                flushed first and only events they include are deleted (metrics are never \
                decremented); events committed while the delete runs may remain.",
                "parameters": [
                    param("key", "Delete this key's events.", json!({"type": "string", "minLength": 1})),
                    param("prefix", "Delete the events of every key starting with this.", json!({"type": "string", "minLength": 1})),
                    param("from", "RFC 3339, inclusive.", json!({"type": "string", "format": "date-time"})),
                    param("to", "RFC 3339, inclusive.", json!({"type": "string", "format": "date-time"}))
                ],
                "responses": {
                    "200": ok("Deleted.", json!({"$ref": "#/components/schemas/Deleted"})),
                    "400": bad.clone(),
                    "500": store_error(),
                    "503": retry_response("Nothing was deleted: the metrics store did not take the \
                        flush a delete needs, too many store operations are pending, or the \
                        server is stopping. Retry after `Retry-After` seconds."),
                    "507": insufficient_storage()
                }
            }
        },
        "/v1/events/{id}": {"delete": {
            "operationId": "deleteEvent",
            "summary": "Delete one event by the `id` the queries return.",
            "parameters": [path_param("id", "The event's id.",
                json!({"type": "integer", "format": "int64"}))],
            "responses": {
                "200": ok("Deleted.", json!({"$ref": "#/components/schemas/Deleted"})),
                "400": error_response("`Invalid query`: the id is not a 64-bit integer."),
                "404": error_response("No such event (in this key's namespace)."),
                "500": store_error(),
                "503": retry_response("Nothing was deleted: the metrics store did not take the \
                    flush a delete needs, too many store operations are pending, or the server \
                    is stopping. Retry after `Retry-After` seconds."),
                "507": insufficient_storage()
            }
        }},
        "/v1/latest": {"get": {
            "operationId": "queryLatest",
            "summary": "Per key, the newest event at or before `at` that matches `where`.",
            "description": "The predicate is applied before the latest event is chosen. Keys in \
                key order, paged.",
            "parameters": [
                param("prefix", "Only keys starting with this.", json!({"type": "string"})),
                param("at", "RFC 3339; default: now.", json!({"type": "string", "format": "date-time"})),
                param("since", "RFC 3339: leave out keys whose latest match is older.", json!({"type": "string", "format": "date-time"})),
                param("limit", "Keys per page.", json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000})),
                param("cursor", "The previous page's `next_cursor`.", json!({"type": "string"})),
                where_param()
            ],
            "responses": {"200": page_of_events("One event per key."), "400": bad.clone(),
                "500": read_error()}
        }},
        "/v1/kv/{ns}": {"get": {
            "operationId": "kvList",
            "summary": "The values of a namespace, in key order.",
            "parameters": [
                ns_param(),
                param("prefix", "Only keys starting with this.", json!({"type": "string"})),
                param("limit", "Values per page.", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})),
                param("cursor", "The previous page's `next_cursor`.", json!({"type": "string"}))
            ],
            "responses": {"200": ok("One page.", json!({"type": "object",
                "required": ["items", "next_cursor", "ns"], "properties": {
                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/KvItem"}},
                    "next_cursor": {"type": ["string", "null"]},
                    "ns": {"type": "string"}
                }})), "400": bad.clone(), "500": read_error()}
        }},
        "/v1/kv/{ns}/{*key}": {
            "get": {
                "operationId": "kvGet",
                "summary": "One value.",
                "parameters": [ns_param(), key_param()],
                "responses": {
                    "200": ok("The value.", json!({"allOf": [{"$ref": "#/components/schemas/KvItem"},
                        {"type": "object", "required": ["ns"], "properties": {"ns": {"type": "string"}}}]})),
                    "400": error_response("`Invalid query`: the namespace or key is too long \
                        or has control characters, or a query parameter was given (this route \
                        takes none)."),
                    "404": error_response("No value under this key."),
                    "500": read_error()
                }
            },
            "put": {
                "operationId": "kvPut",
                "summary": "Set a value (any JSON), answered once committed.",
                "parameters": [
                    ns_param(), key_param(),
                    param("if_version", "Write only if the stored version is this (0: only if absent).", json!({"type": "integer", "minimum": 0}))
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {}}}},
                "responses": {
                    "200": ok("Stored.", json!({"type": "object", "required": ["key", "ns", "version"],
                        "properties": {"key": {"type": "string"}, "ns": {"type": "string"}, "version": {"type": "integer"}}})),
                    "400": error_response("`Invalid JSON format` (the body is not one JSON value) \
                        or `Invalid query` (the namespace, key or a parameter)."),
                    "408": body_timeout(),
                    "409": error_response("`Version mismatch`."),
                    "413": error_response("`Request body is too large`: the value is larger \
                        than 64 KiB."),
                    "500": store_error(),
                    "503": unavailable(),
                    "507": insufficient_storage()
                }
            },
            "delete": {
                "operationId": "kvDelete",
                "summary": "Delete a value.",
                "parameters": [
                    ns_param(), key_param(),
                    param("if_version", "Delete only if the stored version is this.", json!({"type": "integer", "minimum": 0}))
                ],
                "responses": {
                    "200": ok("Deleted.", json!({"type": "object", "properties": {"deleted": {"const": true}}})),
                    "400": bad.clone(),
                    "404": error_response("No value under this key."),
                    "409": error_response("`Version mismatch`."),
                    "500": store_error(),
                    "503": unavailable(),
                    "507": insufficient_storage()
                }
            }
        },
        "/v1/live": {"get": {
            "operationId": "liveWebSocket",
            "summary": "Live feed over WebSocket (upgrade).",
            "description": "Text frames of JSON. Requests carry an `id` and get a reply with it: \
                {\"id\",\"type\":\"subscribe\",\"stream\":\"events\"|\"flushes\",\"prefix\"?,\"after\"?}, \
                {\"id\",\"type\":\"unsubscribe\",\"subscription\"}, {\"id\",\"type\":\"ping\"}; a bad \
                request gets {\"id\",\"type\":\"error\",...} and the connection stays open. Pushed: \
                ready, event, flush, and {\"type\":\"lagged\",\"missed\":N} when a slow reader missed \
                messages. A revoked key closes the socket with 1008.",
            "responses": {
                "101": {"description": "Switching to the WebSocket protocol."},
                "400": {"description": "Not a WebSocket upgrade request.", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                "503": retry_response("Too many live connections.")
            }
        }},
        "/v1/live/sse": {"get": {
            "operationId": "liveSse",
            "summary": "One live subscription as server-sent events.",
            "description": "Events `event` (with `id:` the event id), `flush`, `lagged` \
                ({\"missed\":N}) and `error`. `Last-Event-ID` or `after` resumes after an event id \
                from the event store, without gaps or duplicates.",
            "parameters": [
                param("stream", "What to follow.", json!({"enum": ["events", "flushes"], "default": "events"})),
                param("prefix", "Only keys starting with this.", json!({"type": "string"})),
                param("after", "Resume after this event id (events only).", json!({"type": "integer"}))
            ],
            "responses": {
                "200": {"description": "The stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "400": bad.clone(),
                "503": retry_response("Too many live connections.")
            }
        }},
        "/v1/keys": {
            "post": {
                "operationId": "createKey",
                "summary": "Create an API key; its token is in this answer only.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["scopes"], "additionalProperties": false,
                    "properties": {
                        "scopes": {"type": "array", "minItems": 1, "items": {"enum": ["read", "write", "delete", "admin"]}},
                        "prefix": {"type": "string", "minLength": 1, "maxLength": 256,
                            "description": "Limit the key to event keys, KV namespaces and feeds starting with this (not for admin keys)."},
                        "label": {"type": "string", "maxLength": 256}
                    }
                }}}},
                "responses": {
                    "201": ok("Created.", json!({"allOf": [{"$ref": "#/components/schemas/ApiKey"},
                        {"type": "object", "required": ["key"], "properties": {"key": {"type": "string",
                            "description": "The bearer token. Store it now: only its hash is kept."}}}]})),
                    "400": error_response("`Invalid request`: the body is not a valid key \
                        description; `detail` says what."),
                    "408": body_timeout(),
                    "413": error_response("`Request body is too large`: more than 16 KiB."),
                    "500": store_error(),
                    "503": unavailable(),
                    "507": insufficient_storage()
                }
            },
            "get": {
                "operationId": "listKeys",
                "summary": "The API keys, without their tokens.",
                "responses": {"200": ok("The keys.", json!({"type": "object", "required": ["keys"],
                    "properties": {"keys": {"type": "array", "items": {"$ref": "#/components/schemas/ApiKey"}}}}))}
            }
        },
        "/v1/keys/{id}": {"delete": {
            "operationId": "revokeKey",
            "summary": "Revoke a key: refused from the next request on; its live connections close.",
            "parameters": [path_param("id", "The key's id.", json!({"type": "string"}))],
            "responses": {
                "200": ok("Revoked.", json!({"type": "object", "properties": {"revoked": {"type": "string"}}})),
                "404": error_response("No key has this id."),
                "500": store_error(),
                "503": unavailable(),
                "507": insufficient_storage()
            }
        }}
    });
    let schemas = json!({
        "QueriedEvent": {
            "type": "object", "required": ["id", "key", "timestamp", "data"],
            "properties": {
                "id": {"type": "integer", "description": "Assigned at commit, increasing; deletes and live resumes use it."},
                "key": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": {"type": ["object", "null"]},
                "event_id": {"type": "string", "description": "The client's idempotency id, when it sent one."}
            }
        },
        "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}},
        "KvItem": {
            "type": "object", "required": ["key", "updated", "value", "version"],
            "properties": {
                "key": {"type": "string"}, "updated": {"type": "string", "format": "date-time"},
                "value": {}, "version": {"type": "integer"}
            }
        },
        "ApiKey": {
            "type": "object", "required": ["id", "scopes", "prefix", "label", "created"],
            "properties": {
                "id": {"type": "string"},
                "scopes": {"type": "array", "items": {"enum": ["read", "write", "delete", "admin"]}},
                "prefix": {"type": ["string", "null"]},
                "label": {"type": ["string", "null"]},
                "created": {"type": "string", "format": "date-time"}
            }
        }
    });
    for (path, ops) in paths.as_object().expect("an object") {
        doc["paths"][path] = ops.clone();
    }
    for (name, schema) in schemas.as_object().expect("an object") {
        doc["components"]["schemas"][name] = schema.clone();
    }
}

/// Bearer security on every operation whose route needs a key, from the route's own row.
fn add_security<S>(doc: &mut Value, routes: &[Route<S>]) {
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer",
        "description": "An API key. Only needed when the server has keys (an admin key or stored \
                keys); without any, every route is open."}});
    let mut unauthorized =
        error_response("`Unauthorized`: no key, a malformed header, or an unknown or revoked key.");
    unauthorized["headers"] = json!({"WWW-Authenticate": {
        "description": "`Bearer realm=\"accrue\"`.",
        "required": true,
        "schema": {"type": "string"}
    }});
    let forbidden = error_response(
        "`Forbidden`: the key lacks the scope, or the request leaves its namespace.",
    );
    for r in routes {
        let scope = match r.access {
            Access::Open => continue,
            Access::Need(s) => s.as_str().to_owned(),
            Access::NeedUnlimited(s) => format!("{} (without a prefix)", s.as_str()),
        };
        // A row without its operation stays undocumented (and fails the tests), rather than
        // being documented by its security alone.
        let Some(op) = doc["paths"]
            .get_mut(r.path)
            .and_then(|ops| ops.get_mut(r.verb.as_str()))
        else {
            continue;
        };
        op["security"] = json!([{"bearer": []}]);
        op["x-scope"] = Value::String(scope);
        op["responses"]["401"] = unauthorized.clone();
        op["responses"]["403"] = forbidden.clone();
    }
}

/// The connection cap's `503` on every operation that does not describe its own.
fn add_unavailable(doc: &mut Value) {
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for op in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in op.values_mut() {
            if op["responses"].get("503").is_none() {
                op["responses"]["503"] = unavailable();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::routes::ROUTES;
    use super::*;

    fn document() -> String {
        super::document(ROUTES)
    }

    #[test]
    fn documents_exactly_the_routes() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.verb.as_str().to_owned(), r.path.to_owned()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn every_reference_resolves() {
        let text = document();
        let doc: Value = serde_json::from_str(&text).unwrap();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }

    /// Every `{name}` of a path template is a declared path parameter, and the other way round
    /// (`{*key}` is the parameter `*key`): clients fill in exactly the declared ones.
    #[test]
    fn path_templates_match_their_parameters() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            let mut in_template: Vec<&str> = path
                .split('{')
                .skip(1)
                .map(|p| &p[..p.find('}').unwrap()])
                .collect();
            in_template.sort_unstable();
            for (method, op) in ops.as_object().unwrap() {
                let mut declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect();
                declared.sort_unstable();
                assert_eq!(declared, in_template, "{method} {path}");
            }
        }
    }

    /// Any request can meet the connection cap, so every operation documents its `503` and
    /// the `Retry-After` that comes with it (`/ready`'s own `503` may come without).
    #[test]
    fn every_operation_documents_503_with_retry_after() {
        let doc: Value = serde_json::from_str(&document()).unwrap();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let busy = &op["responses"]["503"];
                assert!(busy.is_object(), "{method} {path}");
                if path != "/ready" {
                    assert!(
                        busy["headers"]["Retry-After"]["schema"].is_object(),
                        "{method} {path}"
                    );
                }
            }
        }
    }
}
