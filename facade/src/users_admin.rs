//! The users admin calls (see `admin::UsersCall`): parse the query, apply the change through
//! `users::Users` (engine first, then the snapshot), answer JSON. Root-only; the handler
//! checks that before it comes here.

use crate::admin::{to_json, NewKeyReport, UserReport, UsersCall};
use crate::body::{full, BodyPump};
use crate::ops::{status, Ctx, Resp};
use crate::users::{Change, Status};
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use s3::auth::sigv4::AuthContext;
use s3::error::{S3Error, S3ErrorCode};
use s3::router::Query;

/// A JSON answer.
pub fn json(body: String) -> Resp {
    let mut r = Response::new(full(body));
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn required<'q>(q: &'q Query, name: &str) -> Result<&'q str, S3Error> {
    q.get(name).filter(|v| !v.is_empty()).ok_or_else(|| S3Error::invalid_argument(format!("{name}=... is required")))
}

pub async fn serve(
    ctx: &Ctx,
    call: UsersCall,
    q: &Query,
    parts: &Parts,
    auth: &AuthContext,
    body: Incoming,
) -> Result<Resp, S3Error> {
    let users = &ctx.users;
    if call == UsersCall::List {
        let list: Vec<UserReport> = users.list().iter().map(|u| UserReport::from(&u.record)).collect();
        return Ok(json(to_json(&list)));
    }
    let name = required(q, "name")?.to_string();
    if call == UsersCall::GetPolicy {
        let u = users.get(&name).ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::NoSuchEntity, format!("The user with name {name} cannot be found."))
        })?;
        let text = u.record.policy.clone().ok_or_else(|| {
            S3Error::with_message(S3ErrorCode::NoSuchEntity, format!("User {name} has no identity policy."))
        })?;
        return Ok(json(text));
    }
    let change = match call {
        UsersCall::List | UsersCall::GetPolicy => unreachable!("answered above"),
        UsersCall::Create => Change::CreateUser { name },
        UsersCall::Delete => Change::DeleteUser { name },
        UsersCall::CreateKey => Change::CreateKey { name },
        UsersCall::DeleteKey => Change::DeleteKey { name, access_key: required(q, "key")?.to_string() },
        UsersCall::SetKeyStatus => {
            let status = match required(q, "status")? {
                "active" => Status::Active,
                "inactive" => Status::Inactive,
                other => return Err(S3Error::invalid_argument(format!("status={other}: give active or inactive"))),
            };
            Change::SetKeyStatus { name, access_key: required(q, "key")?.to_string(), status }
        }
        UsersCall::PutPolicy => {
            let text = crate::ops::policy::read_policy_text(BodyPump::new(parts, auth, body)?).await?;
            Change::PutPolicy { name, text }
        }
        UsersCall::DeletePolicy => Change::DeletePolicy { name },
    };
    let user = change.user().to_string();
    match users.apply(&ctx.engine, change).await? {
        Some(key) => Ok(json(to_json(&NewKeyReport { user, access_key: key.access_key, secret_key: key.secret_key }))),
        None => Ok(status(StatusCode::NO_CONTENT)),
    }
}
