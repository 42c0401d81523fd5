//! The OpenAPI 3.1 description served at `/openapi.json`. Its `paths` are exactly
//! [`ROUTES`](super::routes::ROUTES); the collector tests check that and call every operation.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
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
             required`, `Event key is too long`, `Event data is too large`, `Invalid event id` or \
             `Invalid event key` (a key the metrics store reserves or refuses); `index` names \
             the event."),
        "413": error_response(
            "Nothing was stored: `Request body is too large` or `Too many events in one request`."),
        "503": {
            "description": "Nothing was stored: the ingest queue is full or the server is \
                stopping. Retry after the `Retry-After` header's seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        }
    })
}

/// The document, as JSON text.
pub(crate) fn document() -> String {
    let doc = json!({
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
                    "503": {"description": "Not ready; `detail` says why.", "content": {
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
                    "500": error_response("`Failed to retrieve events`.")
                }
            }},
            "/v1/values": {"get": {
                "operationId": "values",
                "summary": "A timeline of one event key from the metrics store.",
                "description": "Every stored event is counted per key and bucket, and the numeric \
                    fields of its data are summed: each bucket is {\"count\": n, \"data\": {...}}, \
                    or {} when nothing was stored. Bucket starts are in the configured time zone.",
                "parameters": [
                    {"name": "key", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "from", "in": "query", "description": "RFC 3339; default: 24 hours before `to`.", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "to", "in": "query", "description": "RFC 3339; default: now.", "schema": {"type": "string", "format": "date-time"}},
                    {"name": "granularity", "in": "query", "description": "e.g. 1h; default: the first configured.", "schema": {"type": "string"}},
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
                "type": ["object", "null"],
                "description": "Field names match case-insensitively; unknown fields are ignored.",
                "properties": {
                    "key": {"type": "string", "minLength": 1, "maxLength": 256},
                    "timestamp": {"type": ["string", "null"], "format": "date-time",
                        "description": "RFC 3339; missing, null or 0001-01-01T00:00:00Z means the server's clock."},
                    "data": {"type": ["object", "null"], "description": "Stored as received, at most 64 KiB."},
                    "id": {"type": ["string", "null"], "maxLength": 128,
                        "description": "Idempotency id: an event whose id is already stored is skipped and counted in `duplicates`."}
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
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::routes::ROUTES;
    use super::*;

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
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
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
}
