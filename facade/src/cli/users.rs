//! `tessera user ...`: the client of the users admin calls (see [`crate::admin::UsersCall`]),
//! signed by the root user like every admin call.

use super::admin::{credentials_from_env, error_text, json_answer, signed_call_with_body};
use crate::admin::{NewKeyReport, UserReport, USERS_PATH, USER_KEYS_PATH, USER_KEY_STATUS_PATH, USER_POLICY_PATH};
use http::Method;

/// What to ask a running server.
pub enum UserCommand {
    Create { name: String },
    List,
    Delete { name: String },
    KeyCreate { name: String },
    KeyDelete { name: String, key: String },
    KeyStatus { name: String, key: String, active: bool },
    PolicyPut { name: String, file: std::path::PathBuf },
    PolicyGet { name: String },
    PolicyDelete { name: String },
}

/// Run one `tessera user` command against `endpoint`; `json` prints answers as the server's
/// JSON (for scripts) instead of text.
pub fn run(endpoint: &str, region: &str, json: bool, cmd: UserCommand) -> Result<(), String> {
    let (ak, sk) = credentials_from_env()?;
    let creds = (ak.as_str(), sk.as_str(), region);
    let call = |method: Method, path: &str, params: &[(&str, &str)], body: Vec<u8>| {
        signed_call_with_body(endpoint, &method, path, params, body, creds)
    };
    // A change answered 204: done, or the server's refusal.
    let done = |path: &str, (status, body): (u16, String), what: String| {
        if status == 204 {
            println!("{what}");
            Ok(())
        } else {
            Err(error_text(endpoint, path, status, &body))
        }
    };
    let new_key = |path: &str, (status, body): (u16, String)| -> Result<(), String> {
        let k: NewKeyReport = json_answer(endpoint, path, status, &body)?;
        if json {
            println!("{body}");
        } else {
            println!("user:       {}", k.user);
            println!("access key: {}", k.access_key);
            println!("secret key: {}", k.secret_key);
            println!("(the secret is shown this once: keep it now)");
        }
        Ok(())
    };
    match cmd {
        UserCommand::Create { name } => {
            new_key(USERS_PATH, call(Method::POST, USERS_PATH, &[("name", &name)], vec![])?)
        }
        UserCommand::List => {
            let (status, body) = call(Method::GET, USERS_PATH, &[], vec![])?;
            let users: Vec<UserReport> = json_answer(endpoint, USERS_PATH, status, &body)?;
            if json {
                println!("{body}");
                return Ok(());
            }
            for u in users {
                let keys: Vec<String> = u
                    .keys
                    .iter()
                    .map(|k| match k.status {
                        crate::users::Status::Active => k.access_key.clone(),
                        crate::users::Status::Inactive => format!("{} (disabled)", k.access_key),
                    })
                    .collect();
                let policy = if u.has_policy { "policy" } else { "no policy" };
                println!("{}\t{}\t{}", u.name, policy, keys.join(", "));
            }
            Ok(())
        }
        UserCommand::Delete { name } => done(
            USERS_PATH,
            call(Method::DELETE, USERS_PATH, &[("name", &name)], vec![])?,
            format!("user {name} deleted; its keys are refused from now on"),
        ),
        UserCommand::KeyCreate { name } => {
            new_key(USER_KEYS_PATH, call(Method::POST, USER_KEYS_PATH, &[("name", &name)], vec![])?)
        }
        UserCommand::KeyDelete { name, key } => done(
            USER_KEYS_PATH,
            call(Method::DELETE, USER_KEYS_PATH, &[("name", &name), ("key", &key)], vec![])?,
            format!("key {key} of user {name} deleted"),
        ),
        UserCommand::KeyStatus { name, key, active } => {
            let status = if active { "active" } else { "inactive" };
            done(
                USER_KEY_STATUS_PATH,
                call(
                    Method::POST,
                    USER_KEY_STATUS_PATH,
                    &[("name", &name), ("key", &key), ("status", status)],
                    vec![],
                )?,
                format!("key {key} of user {name} is {}", if active { "enabled" } else { "disabled" }),
            )
        }
        UserCommand::PolicyPut { name, file } => {
            let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            done(
                USER_POLICY_PATH,
                call(Method::PUT, USER_POLICY_PATH, &[("name", &name)], text)?,
                format!("identity policy of user {name} set from {}", file.display()),
            )
        }
        UserCommand::PolicyGet { name } => {
            let (status, body) = call(Method::GET, USER_POLICY_PATH, &[("name", &name)], vec![])?;
            if status != 200 {
                return Err(error_text(endpoint, USER_POLICY_PATH, status, &body));
            }
            println!("{body}");
            Ok(())
        }
        UserCommand::PolicyDelete { name } => done(
            USER_POLICY_PATH,
            call(Method::DELETE, USER_POLICY_PATH, &[("name", &name)], vec![])?,
            format!("identity policy of user {name} deleted"),
        ),
    }
}
