//! S3 access policies: bucket policies and identity policies, parsed and checked once when
//! stored, then evaluated on every request without allocating.
//!
//! The language is AWS's (IAM policy grammar, as S3 uses it): `Statement`s with `Effect`,
//! `Principal` (bucket policies only), `Action`/`NotAction`, `Resource`/`NotResource` with `*` and
//! `?` wildcards, and `Condition` blocks. Evaluation follows AWS: an explicit `Deny` wins over any
//! `Allow`, and nothing is allowed unless some statement allows it ([`Decision::Implicit`]).
//!
//! Condition keys understood: `s3:prefix`, `s3:delimiter`, `s3:max-keys`, `s3:x-amz-acl`,
//! `aws:SourceIp`, `aws:SecureTransport`, `aws:CurrentTime`, `aws:username`, `aws:PrincipalType`.
//! A policy naming any other key, operator or element is refused when stored
//! (`MalformedPolicy`): a condition the server cannot evaluate must never be taken as met.

use std::net::IpAddr;

use serde_json::Value;

/// The longest policy document S3 accepts, in bytes (bucket policies: 20 KB).
pub const POLICY_BYTES_MAX: usize = 20 * 1024;
/// Statements in one policy, at most (a bound on evaluation work).
pub const STATEMENTS_MAX: usize = 256;

/// What a policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A statement allows it and none denies it.
    Allow,
    /// A statement denies it explicitly: nothing else can allow it.
    Deny,
    /// No statement applies.
    Implicit,
}

impl Decision {
    /// Combine two policies' decisions: an explicit deny in either wins, then an allow.
    pub fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::Deny, _) | (_, Decision::Deny) => Decision::Deny,
            (Decision::Allow, _) | (_, Decision::Allow) => Decision::Allow,
            _ => Decision::Implicit,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    /// No credentials.
    Anonymous,
    /// The node's root user (the key from the environment or `<data>/credentials`).
    Root,
    /// A user created through the admin API, by name.
    User(&'a str),
}

/// One request as a policy sees it. Everything is borrowed from the request: building one costs
/// no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub principal: Principal<'a>,
    /// The S3 action, e.g. `s3:GetObject`.
    pub action: &'a str,
    pub bucket: &'a str,
    /// The object key, for object-level actions.
    pub key: Option<&'a str>,
    /// ListObjects arguments (`s3:prefix`, `s3:delimiter`, `s3:max-keys`), if given.
    pub prefix: Option<&'a str>,
    pub delimiter: Option<&'a str>,
    pub max_keys: Option<&'a str>,
    /// The canned ACL the request sets (`x-amz-acl`), if any.
    pub acl: Option<&'a str>,
    pub source_ip: Option<IpAddr>,
    /// Whether the request came over TLS.
    pub secure_transport: bool,
    /// Seconds since the Unix epoch, now.
    pub now_secs: i64,
}

/// Why a policy document was refused (S3's `MalformedPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError(pub String);

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn malformed<T>(why: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError(why.into()))
}

/// Where a policy is attached: it decides whether `Principal` is required or forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind<'a> {
    /// A bucket policy of this bucket: every statement names a principal, and every resource
    /// is in the bucket.
    Bucket(&'a str),
    /// An identity policy attached to a user: statements name no principal.
    Identity,
}

/// A parsed, checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    deny: bool,
    /// `None` in identity policies (the user the policy is attached to).
    principal: Option<Principals>,
    actions: Patterns,
    resources: Patterns,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
enum Principals {
    /// `"*"` or `{"AWS": "*"}`: anyone, anonymous included.
    Anyone,
    /// User names (`alice`, or an ARN ending in `:user/alice`); `:root` names the root user.
    Named { users: Vec<String>, root: bool },
}

/// `Action` or `NotAction` (or the resource pair): wildcard patterns, and whether they are
/// negated.
#[derive(Debug, Clone, PartialEq)]
struct Patterns {
    not: bool,
    /// Actions are stored lowercased (matched without case); resources as written.
    list: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    S3Prefix,
    S3Delimiter,
    S3MaxKeys,
    S3XAmzAcl,
    SourceIp,
    SecureTransport,
    CurrentTime,
    Username,
    PrincipalType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    IpAddress,
    NotIpAddress,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        use Op::*;
        Some(match name {
            "StringEquals" => StringEquals,
            "StringNotEquals" => StringNotEquals,
            "StringEqualsIgnoreCase" => StringEqualsIgnoreCase,
            "StringNotEqualsIgnoreCase" => StringNotEqualsIgnoreCase,
            "StringLike" => StringLike,
            "StringNotLike" => StringNotLike,
            "NumericEquals" => NumericEquals,
            "NumericNotEquals" => NumericNotEquals,
            "NumericLessThan" => NumericLessThan,
            "NumericLessThanEquals" => NumericLessThanEquals,
            "NumericGreaterThan" => NumericGreaterThan,
            "NumericGreaterThanEquals" => NumericGreaterThanEquals,
            "DateEquals" => DateEquals,
            "DateNotEquals" => DateNotEquals,
            "DateLessThan" => DateLessThan,
            "DateLessThanEquals" => DateLessThanEquals,
            "DateGreaterThan" => DateGreaterThan,
            "DateGreaterThanEquals" => DateGreaterThanEquals,
            "Bool" => Bool,
            "IpAddress" => IpAddress,
            "NotIpAddress" => NotIpAddress,
            _ => return None,
        })
    }

    /// Negated operators are true when the key is absent, and when no value matches.
    fn negated(self) -> bool {
        use Op::*;
        matches!(
            self,
            StringNotEquals
                | StringNotEqualsIgnoreCase
                | StringNotLike
                | NumericNotEquals
                | DateNotEquals
                | NotIpAddress
        )
    }
}

/// A condition's values, in the form its operator compares.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Strings(Vec<String>),
    Numbers(Vec<i64>),
    /// Seconds since the epoch.
    Dates(Vec<i64>),
    Bools(Vec<bool>),
    Cidrs(Vec<Cidr>),
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Op,
    key: Key,
    /// `...IfExists`: true when the key is absent.
    if_exists: bool,
    values: Values,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix_bits: u8,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (a, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_bits = bits.unwrap_or(max);
        (prefix_bits <= max).then_some(Cidr { addr, prefix_bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix_bits as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix_bits as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `*` matches any run of characters (also empty), `?` any one character; `case_blind` folds
/// ASCII case. Iterative, linear in practice, no allocation. `text` is the concatenation of
/// `parts`, so an ARN need not be built to be matched.
fn wildcard_match(pattern: &str, parts: &[&str], case_blind: bool) -> bool {
    let p = pattern.as_bytes();
    let len: usize = parts.iter().map(|s| s.len()).sum();
    let at = |mut i: usize| -> u8 {
        for s in parts {
            if i < s.len() {
                return s.as_bytes()[i];
            }
            i -= s.len();
        }
        unreachable!("index within the parts' total length")
    };
    let eq = |a: u8, b: u8| if case_blind { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < len {
        if pi < p.len() && (p[pi] == b'?' || (p[pi] != b'*' && eq(p[pi], at(ti)))) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

const S3_ARN_PREFIX: &str = "arn:aws:s3:::";

/// A JSON value that may be one string or an array of strings.
fn strings(v: &Value, what: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => malformed(format!("{what} must be a string or a list of strings")),
            })
            .collect(),
        _ => malformed(format!("{what} must be a string or a non-empty list of strings")),
    }
}

/// Condition values may be strings, numbers or booleans in JSON; AWS compares their text.
fn condition_strings(v: &Value) -> Result<Vec<String>, PolicyError> {
    let one = |x: &Value| match x {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => malformed("condition values must be strings, numbers or booleans"),
    };
    match v {
        Value::Array(a) if !a.is_empty() => a.iter().map(one).collect(),
        Value::Array(_) => malformed("a condition needs at least one value"),
        x => Ok(vec![one(x)?]),
    }
}

fn parse_key(name: &str) -> Option<Key> {
    // Condition keys are case-insensitive in AWS.
    let k = name.to_ascii_lowercase();
    Some(match k.as_str() {
        "s3:prefix" => Key::S3Prefix,
        "s3:delimiter" => Key::S3Delimiter,
        "s3:max-keys" => Key::S3MaxKeys,
        "s3:x-amz-acl" => Key::S3XAmzAcl,
        "aws:sourceip" => Key::SourceIp,
        "aws:securetransport" => Key::SecureTransport,
        "aws:currenttime" => Key::CurrentTime,
        "aws:username" => Key::Username,
        "aws:principaltype" => Key::PrincipalType,
        _ => return None,
    })
}

fn parse_date(s: &str) -> Option<i64> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    let t = crate::http_util::parse_iso8601(s)?;
    t.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs() as i64)
}

fn parse_condition(op_name: &str, key_name: &str, v: &Value) -> Result<Condition, PolicyError> {
    let (base, if_exists) = match op_name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (op_name, false),
    };
    let Some(op) = Op::parse(base) else {
        return malformed(format!("condition operator {op_name} is not supported"));
    };
    let Some(key) = parse_key(key_name) else {
        return malformed(format!("condition key {key_name} is not supported"));
    };
    let texts = condition_strings(v)?;
    use Op::*;
    let values = match op {
        StringEquals
        | StringNotEquals
        | StringEqualsIgnoreCase
        | StringNotEqualsIgnoreCase
        | StringLike
        | StringNotLike => Values::Strings(texts),
        NumericEquals
        | NumericNotEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Values::Numbers(
            texts
                .iter()
                .map(|t| t.trim().parse::<i64>().map_err(|_| PolicyError(format!("{t:?} is not a number"))))
                .collect::<Result<_, _>>()?,
        ),
        DateEquals | DateNotEquals | DateLessThan | DateLessThanEquals | DateGreaterThan | DateGreaterThanEquals => {
            Values::Dates(
                texts
                    .iter()
                    .map(|t| parse_date(t).ok_or_else(|| PolicyError(format!("{t:?} is not an ISO 8601 date"))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Bool => Values::Bools(
            texts
                .iter()
                .map(|t| match t.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(PolicyError(format!("{t:?} is not true or false"))),
                })
                .collect::<Result<_, _>>()?,
        ),
        IpAddress | NotIpAddress => Values::Cidrs(
            texts
                .iter()
                .map(|t| Cidr::parse(t).ok_or_else(|| PolicyError(format!("{t:?} is not an IP address or CIDR"))))
                .collect::<Result<_, _>>()?,
        ),
    };
    let fits = matches!(
        (key, &values),
        (Key::SourceIp, Values::Cidrs(_))
            | (Key::SecureTransport, Values::Bools(_))
            | (Key::CurrentTime, Values::Dates(_))
            | (Key::S3MaxKeys, Values::Numbers(_) | Values::Strings(_))
            | (
                Key::S3Prefix | Key::S3Delimiter | Key::S3XAmzAcl | Key::Username | Key::PrincipalType,
                Values::Strings(_)
            )
    );
    if !fits {
        return malformed(format!("condition operator {op_name} cannot be used with key {key_name}"));
    }
    Ok(Condition { op, key, if_exists, values })
}

fn parse_principal(v: &Value) -> Result<Principals, PolicyError> {
    let names = match v {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(m) => {
            if m.len() != 1 || !m.contains_key("AWS") {
                return malformed("Principal must be \"*\" or {\"AWS\": ...}");
            }
            strings(&m["AWS"], "Principal.AWS")?
        }
        _ => return malformed("Principal must be \"*\" or {\"AWS\": ...}"),
    };
    if names.iter().any(|n| n == "*") {
        return Ok(Principals::Anyone);
    }
    let mut users = Vec::new();
    let mut root = false;
    for n in names {
        if n.ends_with(":root") {
            root = true;
        } else if let Some((_, user)) = n.rsplit_once(":user/") {
            users.push(user.to_string());
        } else if n.starts_with("arn:") {
            return malformed(format!("principal {n} is neither a user nor the root"));
        } else {
            users.push(n);
        }
    }
    Ok(Principals::Named { users, root })
}

fn parse_patterns(st: &serde_json::Map<String, Value>, yes: &str, no: &str) -> Result<Patterns, PolicyError> {
    match (st.get(yes), st.get(no)) {
        (Some(v), None) => Ok(Patterns { not: false, list: strings(v, yes)? }),
        (None, Some(v)) => Ok(Patterns { not: true, list: strings(v, no)? }),
        (Some(_), Some(_)) => malformed(format!("a statement has {yes} or {no}, not both")),
        (None, None) => malformed(format!("a statement needs {yes} or {no}")),
    }
}

impl Policy {
    /// Parse and check a policy document for where it will be attached.
    pub fn parse(text: &str, kind: PolicyKind<'_>) -> Result<Policy, PolicyError> {
        if text.len() > POLICY_BYTES_MAX {
            return malformed(format!("the policy is {} bytes; at most {POLICY_BYTES_MAX} are allowed", text.len()));
        }
        let doc: Value = serde_json::from_str(text).map_err(|e| PolicyError(format!("the policy is not JSON: {e}")))?;
        let Value::Object(doc) = doc else { return malformed("the policy must be a JSON object") };
        for k in doc.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return malformed(format!("unknown policy element {k}"));
            }
        }
        match doc.get("Version").and_then(Value::as_str) {
            None | Some("2012-10-17") | Some("2008-10-17") => {}
            Some(v) => return malformed(format!("policy version {v} is not supported")),
        }
        let list = match doc.get("Statement") {
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            _ => return malformed("the policy needs at least one Statement"),
        };
        if list.len() > STATEMENTS_MAX {
            return malformed(format!("at most {STATEMENTS_MAX} statements are allowed"));
        }
        let mut statements = Vec::with_capacity(list.len());
        for st in &list {
            let Value::Object(st) = st else { return malformed("a Statement must be an object") };
            for k in st.keys() {
                if !matches!(
                    k.as_str(),
                    "Sid" | "Effect" | "Principal" | "Action" | "NotAction" | "Resource" | "NotResource" | "Condition"
                ) {
                    return malformed(format!("unknown or unsupported statement element {k}"));
                }
            }
            let deny = match st.get("Effect").and_then(Value::as_str) {
                Some("Allow") => false,
                Some("Deny") => true,
                _ => return malformed("Effect must be Allow or Deny"),
            };
            let principal = match (kind, st.get("Principal")) {
                (PolicyKind::Bucket(_), Some(p)) => Some(parse_principal(p)?),
                (PolicyKind::Bucket(_), None) => return malformed("a bucket policy statement needs a Principal"),
                (PolicyKind::Identity, None) => None,
                (PolicyKind::Identity, Some(_)) => return malformed("an identity policy names no Principal"),
            };
            let mut actions = parse_patterns(st, "Action", "NotAction")?;
            for a in &mut actions.list {
                if !(a == "*" || a.to_ascii_lowercase().starts_with("s3:")) {
                    return malformed(format!("action {a} is not an S3 action"));
                }
                *a = a.to_ascii_lowercase();
            }
            let resources = parse_patterns(st, "Resource", "NotResource")?;
            for r in &resources.list {
                let Some(rest) = (r == "*").then_some("*").or_else(|| r.strip_prefix(S3_ARN_PREFIX)) else {
                    return malformed(format!("resource {r} is not an S3 ARN (arn:aws:s3:::bucket[/key])"));
                };
                if let PolicyKind::Bucket(bucket) = kind {
                    let named = rest.split('/').next().unwrap_or("");
                    if !wildcard_match(named, &[bucket], false) {
                        return malformed(format!("resource {r} is not in bucket {bucket}"));
                    }
                }
            }
            let mut conditions = Vec::new();
            match st.get("Condition") {
                None => {}
                Some(Value::Object(ops)) => {
                    for (op, keys) in ops {
                        let Value::Object(keys) = keys else {
                            return malformed(format!("condition {op} must map keys to values"));
                        };
                        for (key, v) in keys {
                            conditions.push(parse_condition(op, key, v)?);
                        }
                    }
                }
                Some(_) => return malformed("Condition must be an object"),
            }
            statements.push(Statement { deny, principal, actions, resources, conditions });
        }
        Ok(Policy { statements })
    }

    /// What this policy says about `req`.
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let mut allowed = false;
        for st in &self.statements {
            if st.applies(req) {
                if st.deny {
                    return Decision::Deny;
                }
                allowed = true;
            }
        }
        if allowed {
            Decision::Allow
        } else {
            Decision::Implicit
        }
    }

    /// Whether any statement allows anonymous callers (`Principal: "*"` with `Allow`): what S3
    /// calls a public policy, refused under Block Public Access.
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| !s.deny && s.principal == Some(Principals::Anyone))
    }
}

impl Statement {
    fn applies(&self, req: &Request<'_>) -> bool {
        let principal_ok = match &self.principal {
            None | Some(Principals::Anyone) => true,
            Some(Principals::Named { users, root }) => match req.principal {
                Principal::Anonymous => false,
                Principal::Root => *root,
                Principal::User(name) => users.iter().any(|u| u == name),
            },
        };
        principal_ok
            && self.actions.matches(&[req.action], true)
            && self.resource_matches(req)
            && self.conditions.iter().all(|c| c.holds(req))
    }

    fn resource_matches(&self, req: &Request<'_>) -> bool {
        match req.key {
            Some(key) => self.resources.matches(&[S3_ARN_PREFIX, req.bucket, "/", key], false),
            None => self.resources.matches(&[S3_ARN_PREFIX, req.bucket], false),
        }
    }
}

impl Patterns {
    fn matches(&self, parts: &[&str], case_blind: bool) -> bool {
        let any = self.list.iter().any(|p| p == "*" || wildcard_match(p, parts, case_blind));
        any != self.not
    }
}

/// A condition key's value in the request, borrowed.
enum Actual<'a> {
    Str(&'a str),
    Ip(IpAddr),
    Bool(bool),
    Date(i64),
}

impl Condition {
    fn actual<'a>(&self, req: &Request<'a>) -> Option<Actual<'a>> {
        Some(match self.key {
            Key::S3Prefix => Actual::Str(req.prefix?),
            Key::S3Delimiter => Actual::Str(req.delimiter?),
            Key::S3MaxKeys => Actual::Str(req.max_keys?),
            Key::S3XAmzAcl => Actual::Str(req.acl?),
            Key::SourceIp => Actual::Ip(req.source_ip?),
            Key::SecureTransport => Actual::Bool(req.secure_transport),
            Key::CurrentTime => Actual::Date(req.now_secs),
            Key::Username => match req.principal {
                Principal::User(name) => Actual::Str(name),
                _ => return None,
            },
            Key::PrincipalType => Actual::Str(match req.principal {
                Principal::Anonymous => "Anonymous",
                Principal::Root => "Account",
                Principal::User(_) => "User",
            }),
        })
    }

    fn holds(&self, req: &Request<'_>) -> bool {
        let Some(actual) = self.actual(req) else {
            // Absent key: IfExists and the negated operators hold; the rest do not.
            return self.if_exists || self.op.negated();
        };
        let any = self.any_value_matches(&actual);
        if self.op.negated() {
            !any
        } else {
            any
        }
    }

    /// Whether the actual value matches one of the condition's values under the operator's
    /// positive form (`StringNotLike` compares as `StringLike`, then is negated by `holds`).
    fn any_value_matches(&self, actual: &Actual<'_>) -> bool {
        use Op::*;
        match (&self.values, actual) {
            (Values::Strings(vs), Actual::Str(a)) => vs.iter().any(|v| match self.op {
                StringEquals | StringNotEquals => v == a,
                StringEqualsIgnoreCase | StringNotEqualsIgnoreCase => v.eq_ignore_ascii_case(a),
                StringLike | StringNotLike => wildcard_match(v, &[a], false),
                _ => false,
            }),
            (Values::Numbers(vs), Actual::Str(a)) => {
                let Ok(a) = a.trim().parse::<i64>() else { return false };
                vs.iter().any(|v| compare(self.op, a, *v))
            }
            (Values::Dates(vs), Actual::Date(a)) => vs.iter().any(|v| compare(self.op, *a, *v)),
            (Values::Bools(vs), Actual::Bool(a)) => vs.iter().any(|v| v == a),
            (Values::Cidrs(vs), Actual::Ip(ip)) => vs.iter().any(|c| c.contains(*ip)),
            _ => false,
        }
    }
}

fn compare(op: Op, actual: i64, value: i64) -> bool {
    use Op::*;
    match op {
        NumericEquals | NumericNotEquals | DateEquals | DateNotEquals => actual == value,
        NumericLessThan | DateLessThan => actual < value,
        NumericLessThanEquals | DateLessThanEquals => actual <= value,
        NumericGreaterThan | DateGreaterThan => actual > value,
        NumericGreaterThanEquals | DateGreaterThanEquals => actual >= value,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(principal: Principal<'a>, action: &'a str, key: Option<&'a str>) -> Request<'a> {
        Request {
            principal,
            action,
            bucket: "photos",
            key,
            prefix: None,
            delimiter: None,
            max_keys: None,
            acl: None,
            source_ip: Some("127.0.0.1".parse().expect("ip")),
            secure_transport: false,
            now_secs: 1_800_000_000,
        }
    }

    fn bucket_policy(text: &str) -> Policy {
        Policy::parse(text, PolicyKind::Bucket("photos")).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    #[test]
    fn wildcards_match_like_aws() {
        assert!(wildcard_match("s3:get*", &["s3:getobject"], false));
        assert!(wildcard_match("S3:Get*", &["s3:getobject"], true));
        assert!(!wildcard_match("s3:Get*", &["s3:PutObject"], true));
        assert!(wildcard_match("arn:aws:s3:::photos/2024/*", &[S3_ARN_PREFIX, "photos", "/", "2024/a.jpg"], false));
        assert!(!wildcard_match("arn:aws:s3:::photos/2024/*", &[S3_ARN_PREFIX, "photos", "/", "2025/a.jpg"], false));
        assert!(wildcard_match("a?c*", &["ab", "cdef"], false));
        assert!(wildcard_match("*", &[""], false));
        assert!(!wildcard_match("a", &[""], false));
        assert!(wildcard_match("*a*b*c", &["xxaxxbxxc"], false));
        assert!(!wildcard_match("*a*b*c", &["xxaxxcxxb"], false));
    }

    #[test]
    fn public_read_allows_anonymous_gets_only() {
        let p = bucket_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",
                "Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*"}]}"#,
        );
        assert!(p.is_public());
        assert_eq!(p.evaluate(&req(Principal::Anonymous, "s3:GetObject", Some("a.jpg"))), Decision::Allow);
        assert_eq!(p.evaluate(&req(Principal::Anonymous, "s3:PutObject", Some("a.jpg"))), Decision::Implicit);
        assert_eq!(p.evaluate(&req(Principal::Anonymous, "s3:ListBucket", None)), Decision::Implicit);
    }

    #[test]
    fn explicit_deny_beats_allow_and_not_action_inverts() {
        let p = bucket_policy(
            r#"{"Statement":[
                {"Effect":"Allow","Principal":{"AWS":["alice"]},"Action":"s3:*","Resource":["arn:aws:s3:::photos","arn:aws:s3:::photos/*"]},
                {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::tessera:user/alice"},"NotAction":["s3:Get*","s3:List*"],
                 "Resource":"arn:aws:s3:::photos/private/*"}]}"#,
        );
        let alice = Principal::User("alice");
        assert_eq!(p.evaluate(&req(alice, "s3:PutObject", Some("public/x"))), Decision::Allow);
        assert_eq!(p.evaluate(&req(alice, "s3:GetObject", Some("private/x"))), Decision::Allow);
        assert_eq!(p.evaluate(&req(alice, "s3:PutObject", Some("private/x"))), Decision::Deny);
        assert_eq!(p.evaluate(&req(alice, "s3:DeleteObject", Some("private/x"))), Decision::Deny);
        assert_eq!(p.evaluate(&req(Principal::User("bob"), "s3:GetObject", Some("x"))), Decision::Implicit);
        assert_eq!(p.evaluate(&req(Principal::Anonymous, "s3:GetObject", Some("x"))), Decision::Implicit);
        assert!(!p.is_public());
    }

    #[test]
    fn prefix_conditions_limit_listing() {
        let p = bucket_policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"s3:ListBucket",
                "Resource":"arn:aws:s3:::photos","Condition":{"StringLike":{"s3:prefix":["bob/*","bob"]},
                "NumericLessThanEquals":{"s3:max-keys":"100"}}}]}"#,
        );
        let mut r = req(Principal::User("bob"), "s3:ListBucket", None);
        assert_eq!(p.evaluate(&r), Decision::Implicit, "no prefix: the key is absent, StringLike fails");
        r.prefix = Some("bob/2024/");
        assert_eq!(p.evaluate(&r), Decision::Implicit, "max-keys absent");
        r.max_keys = Some("50");
        assert_eq!(p.evaluate(&r), Decision::Allow);
        r.max_keys = Some("1000");
        assert_eq!(p.evaluate(&r), Decision::Implicit);
        r.max_keys = Some("10");
        r.prefix = Some("alice/");
        assert_eq!(p.evaluate(&r), Decision::Implicit);
    }

    #[test]
    fn ip_transport_time_and_negated_conditions() {
        let p = bucket_policy(
            r#"{"Statement":[
                {"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::photos/*",
                 "Condition":{"IpAddress":{"aws:SourceIp":["127.0.0.0/8","::1/128"]},
                              "DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}},
                {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos/*",
                 "Condition":{"Bool":{"aws:SecureTransport":"false"},"StringNotLike":{"s3:x-amz-acl":"private"}}}]}"#,
        );
        let mut r = req(Principal::Anonymous, "s3:GetObject", Some("k"));
        assert_eq!(p.evaluate(&r), Decision::Deny, "no ACL header: StringNotLike holds on the absent key");
        r.acl = Some("private");
        assert_eq!(p.evaluate(&r), Decision::Allow);
        r.source_ip = Some("10.1.2.3".parse().expect("ip"));
        assert_eq!(p.evaluate(&r), Decision::Implicit);
        r.source_ip = Some("::ffff:127.0.0.9".parse().expect("ip"));
        assert_eq!(p.evaluate(&r), Decision::Allow, "IPv4-mapped IPv6 is its IPv4 address");
        r.now_secs = 1_900_000_000;
        assert_eq!(p.evaluate(&r), Decision::Implicit, "after the date");
        r.now_secs = 1_800_000_000;
        r.acl = None;
        r.secure_transport = true;
        assert_eq!(p.evaluate(&r), Decision::Allow, "over TLS the deny does not apply");
    }

    #[test]
    fn if_exists_holds_when_the_key_is_absent() {
        let p = bucket_policy(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::photos/*",
                "Condition":{"StringEqualsIfExists":{"s3:x-amz-acl":"private"}}}]}"#,
        );
        let mut r = req(Principal::Anonymous, "s3:PutObject", Some("k"));
        assert_eq!(p.evaluate(&r), Decision::Allow);
        r.acl = Some("public-read");
        assert_eq!(p.evaluate(&r), Decision::Implicit);
    }

    #[test]
    fn identity_policies_name_no_principal() {
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::*/team-a/*"}}"#,
            PolicyKind::Identity,
        )
        .expect("identity policy");
        let carol = Principal::User("carol");
        assert_eq!(p.evaluate(&req(carol, "s3:PutObject", Some("team-a/x"))), Decision::Allow);
        assert_eq!(p.evaluate(&req(carol, "s3:PutObject", Some("team-b/x"))), Decision::Implicit);
        assert!(Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
            PolicyKind::Identity
        )
        .is_err());
    }

    #[test]
    fn malformed_policies_are_refused_with_a_reason() {
        for bad in [
            "",
            "[]",
            r#"{"Statement":[]}"#,
            r#"{"Version":"2099-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::photos"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:*","Resource":"arn:aws:s3:::photos"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","NotAction":"s3:Get*","Resource":"*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"aws:Referer":"x"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"StringMaybe":{"s3:prefix":"x"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SourceIp":"true"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:*","Resource":"*"}}"#,
        ] {
            assert!(Policy::parse(bad, PolicyKind::Bucket("photos")).is_err(), "accepted: {bad}");
        }
        let big = format!(r#"{{"Id":"{}","Statement":[]}}"#, "x".repeat(POLICY_BYTES_MAX));
        assert!(Policy::parse(&big, PolicyKind::Bucket("photos")).expect_err("too big").0.contains("bytes"));
    }

    #[test]
    fn decisions_combine_deny_first() {
        use Decision::*;
        assert_eq!(Allow.and(Deny), Deny);
        assert_eq!(Implicit.and(Allow), Allow);
        assert_eq!(Implicit.and(Implicit), Implicit);
    }
}
