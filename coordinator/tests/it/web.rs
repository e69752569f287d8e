//! The dashboard API's answers to service errors: each variant its own HTTP status, straight
//! from the variant (gRPC has no 409 or 413), with the error document the API documents.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use poet_coordinator::error::ServiceError;
use poet_coordinator::web::ApiError;
use tonic::Code;

use crate::queue::{report, setup};

/// The status and the `{"error": {"status", "message"}}` document the API answers `e` with.
async fn answer(e: ServiceError) -> (StatusCode, serde_json::Value) {
    let r = ApiError::service(e).into_response();
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn web_answers_a_conflict_409_too_large_413_and_an_outage_503() {
    let (pool, q, worker) = setup(1, 3).await;
    let c = q.claim(worker, Utc::now()).await.unwrap().unwrap();
    assert!(q.report_epoch(c.lease, &report(1, 2.0)).await.unwrap());
    // The same epoch again with other losses: the queue refuses it as a conflict.
    let conflict = q.report_epoch(c.lease, &report(1, 1.5)).await.unwrap_err();
    assert!(matches!(conflict, ServiceError::Conflict(_)), "{conflict}");
    assert_eq!(conflict.code(), Code::AlreadyExists, "gRPC keeps its code");
    let (st, doc) = answer(conflict).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(doc["error"]["status"], 409);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already stored with different values"),
        "{doc}"
    );

    // Too large only arises inside the checkpoint upload stream (a header over
    // --max-checkpoint-bytes), which speaks gRPC; the web maps the same variant.
    let too_large = ServiceError::TooLarge("header.size: 9000000000 is outside 0..=1024".into());
    assert_eq!(too_large.code(), Code::ResourceExhausted);
    let (st, doc) = answer(too_large).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(doc["error"]["status"], 413);

    // A database outage, by type: the pool is gone, so the query never reaches Postgres.
    pool.close().await;
    let down: ServiceError = sqlx::query("select 1")
        .execute(&pool)
        .await
        .unwrap_err()
        .into();
    assert!(matches!(down, ServiceError::Unavailable(_)), "{down}");
    assert_eq!(down.code(), Code::Unavailable);
    let (st, doc) = answer(down).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(doc["error"]["message"], "database unavailable");
}
