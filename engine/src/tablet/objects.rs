//! Object operations on the tablet that owns the key: conditional writes, put, head, delete,
//! listing, and multipart uploads (create, parts, complete, abort, list).

use super::write::{rotate_for, Written};
use super::Tablet;
use crate::api::*;
use crate::error::{RequestError, Result};
use crate::record::*;
use crate::util::unix_ms;
use md5::{Digest, Md5};
use std::rc::Rc;

impl Tablet {
    fn check_preconditions(
        &self,
        bucket: &str,
        key: &str,
        if_none_match_any: bool,
        if_match: Option<&str>,
    ) -> Result<()> {
        if !(if_none_match_any || if_match.is_some()) {
            return Ok(());
        }
        if self.pending_keys.borrow().contains_key(&(bucket.to_string(), key.to_string())) {
            return Err(RequestError::PreconditionFailed.into());
        }
        let st = self.state.borrow();
        let cur = st.get(bucket, key);
        if if_none_match_any && cur.is_some() {
            return Err(RequestError::PreconditionFailed.into());
        }
        if let Some(want) = if_match {
            match cur {
                None => return Err(RequestError::NoSuchKey { bucket: bucket.into(), key: key.into() }.into()),
                Some(m) if !etag_matches(&m.etag(), want) => return Err(RequestError::PreconditionFailed.into()),
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether any object or upload of `bucket` is here.
    pub fn bucket_in_use(&self, bucket: &str) -> bool {
        self.state.borrow().bucket_in_use(bucket)
    }

    /// Objects in this tablet's index.
    pub fn object_count(&self) -> usize {
        self.state.borrow().object_count()
    }

    pub async fn put_object(
        self: Rc<Self>,
        bucket: String,
        key: String,
        opts: PutOptions,
        body: PutBody,
    ) -> Result<ObjectInfo> {
        check_key(&key)?;
        check_headers(&opts.headers)?;
        let _inflight = self.ctx.inflight(&bucket)?;
        let _busy = self.ctx.foreground_guard();
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        self.admit_write()?;
        let w = self.write_body(body, true, rotate_for(&bucket, &key), MAX_PUT_BYTES).await?;
        self.ctx.foreground_io(self.ctx.ec_write_bytes(w.size));
        if let Some(want) = opts.content_md5 {
            if want != w.md5 {
                return Err(RequestError::BadDigest.into());
            }
        }
        self.ctx.bucket_exists(&bucket)?;
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        let mut headers = opts.headers;
        if w.checksum.is_some() {
            headers.checksum = w.checksum.clone();
        }
        let (data, inline) = match w.data {
            Written::Inline(v) => (DataLoc::Inline { gen: 0, offset: 0, len: 0 }, v),
            Written::Part(p) => (DataLoc::Parts(Box::new([p])), Vec::new()),
        };
        let meta = ObjectMeta {
            size: w.size,
            md5: w.md5,
            parts_count: 0,
            mtime_ms: unix_ms(),
            headers: ObjectMeta::pack_headers(headers),
            data,
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        let rec = Record::ObjectPut { bucket: bucket.clone(), key: key.clone(), meta, inline, completes: None };
        self.commit(rec, Some((bucket, key))).await?;
        Ok(info)
    }

    pub fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo> {
        self.ctx.bucket_exists(bucket)?;
        let st = self.state.borrow();
        let m =
            st.get(bucket, key).ok_or_else(|| RequestError::NoSuchKey { bucket: bucket.into(), key: key.into() })?;
        Ok(ObjectInfo::from_meta(bucket, key, m))
    }

    pub async fn delete_object(self: Rc<Self>, bucket: String, key: String, if_match: Option<String>) -> Result<()> {
        check_key(&key)?;
        self.ctx.bucket_exists(&bucket)?;
        self.check_preconditions(&bucket, &key, false, if_match.as_deref())?;
        if self.state.borrow().get(&bucket, &key).is_none() {
            return Ok(());
        }
        self.admit_write()?;
        self.commit(Record::ObjectDelete { bucket: bucket.clone(), key: key.clone() }, Some((bucket, key))).await
    }
    // ---------------------------------------------------------------- listing

    /// Up to `max_keys + 1` items in key order, each object with its MD5 and parts count; the
    /// ETag string is left empty for the caller to format only for the items it keeps (a merge
    /// over n tablets drops most of them).
    pub fn list(&self, bucket: &str, q: &ListQuery) -> Vec<(ListItem, [u8; 16], u32)> {
        use std::ops::Bound;
        let st = self.state.borrow();
        let Some(map) = st.objects.get(bucket) else { return Vec::new() };
        let limit = q.max_keys.saturating_add(1);
        let mut out = Vec::new();
        let mut lower: Bound<String> = match &q.start_after {
            Some(s) if s.as_str() >= q.prefix.as_str() => Bound::Excluded(s.clone()),
            _ => Bound::Included(q.prefix.clone()),
        };
        'outer: while out.len() < limit {
            let mut next_lower = None;
            for (k, meta) in map.range::<String, _>((lower.clone(), Bound::Unbounded)) {
                if !k.starts_with(&q.prefix) {
                    break 'outer;
                }
                if let Some(d) = q.delimiter.as_deref().filter(|d| !d.is_empty()) {
                    if let Some(pos) = k[q.prefix.len()..].find(d) {
                        let cp = &k[..q.prefix.len() + pos + d.len()];
                        let skip = q.start_after.as_deref().is_some_and(|sa| sa.starts_with(cp) || sa >= cp);
                        if !skip {
                            out.push((ListItem::CommonPrefix(cp.to_string()), [0; 16], 0));
                        }
                        // Jump past every key under this common prefix.
                        next_lower = Some(format!("{cp}{}", char::MAX));
                        break;
                    }
                }
                out.push((
                    ListItem::Object(ListEntry {
                        key: k.clone(),
                        size: meta.size,
                        etag: String::new(),
                        mtime_ms: meta.mtime_ms,
                    }),
                    meta.md5,
                    meta.parts_count,
                ));
                if out.len() >= limit {
                    break 'outer;
                }
            }
            match next_lower {
                Some(n) => lower = Bound::Excluded(n),
                None => break,
            }
        }
        out
    }

    // ---------------------------------------------------------------- multipart

    pub async fn create_upload(self: Rc<Self>, bucket: String, key: String, headers: ObjectHeaders) -> Result<String> {
        check_key(&key)?;
        check_headers(&headers)?;
        self.ctx.bucket_exists(&bucket)?;
        self.admit_write()?;
        let upload_id = format!("{:032x}", rand::random::<u128>());
        let rec = Record::UploadCreate { bucket, key, upload_id: upload_id.clone(), headers, initiated_ms: unix_ms() };
        self.commit(rec, None).await?;
        Ok(upload_id)
    }

    fn upload_of(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let st = self.state.borrow();
        match st.uploads.get(upload_id) {
            Some(u) if u.bucket == bucket && u.key == key => Ok(()),
            _ => Err(RequestError::NoSuchUpload(upload_id.to_string()).into()),
        }
    }

    pub async fn upload_part(
        self: Rc<Self>,
        bucket: String,
        key: String,
        upload_id: String,
        number: u32,
        content_md5: Option<[u8; 16]>,
        body: PutBody,
    ) -> Result<PartInfo> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(RequestError::InvalidPart(format!("part number {number} is outside 1..=10000")).into());
        }
        self.ctx.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        let _inflight = self.ctx.inflight(&bucket)?;
        let _busy = self.ctx.foreground_guard();
        self.admit_write()?;
        let w = self
            .write_body(body, false, rotate_for(&bucket, &key).wrapping_add(number as usize), MAX_PUT_BYTES)
            .await?;
        self.ctx.foreground_io(self.ctx.ec_write_bytes(w.size));
        if content_md5.is_some_and(|m| m != w.md5) {
            return Err(RequestError::BadDigest.into());
        }
        self.upload_of(&bucket, &key, &upload_id)?;
        let Written::Part(layout) = w.data else { unreachable!("a part is written with allow_inline = false") };
        let part = PartRecord { number, mtime_ms: unix_ms(), layout, checksum: w.checksum };
        let info = PartInfo {
            number,
            etag: format!("\"{}\"", hex::encode(w.md5)),
            size: w.size,
            mtime_ms: part.mtime_ms,
            checksum: part.checksum.clone(),
        };
        self.commit(Record::PartPut { upload_id, part }, None).await?;
        Ok(info)
    }

    pub async fn complete_upload(
        self: Rc<Self>,
        bucket: String,
        key: String,
        upload_id: String,
        parts: Vec<(u32, String)>,
        opts: PutOptions,
    ) -> Result<ObjectInfo> {
        self.ctx.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        self.check_preconditions(&bucket, &key, opts.if_none_match_any, opts.if_match.as_deref())?;
        if parts.is_empty() {
            return Err(RequestError::InvalidPart("a multipart upload needs at least one part".into()).into());
        }
        // The order of the whole list is checked before any part, as S3 does: a list out of
        // order is InvalidPartOrder even if a part in it is also too small or unknown.
        if parts.windows(2).any(|w| w[1].0 <= w[0].0) {
            return Err(RequestError::InvalidPartOrder.into());
        }
        let (layouts, md5, headers) = {
            let st = self.state.borrow();
            let u = st.uploads.get(&upload_id).ok_or_else(|| RequestError::NoSuchUpload(upload_id.clone()))?;
            let mut layouts = Vec::with_capacity(parts.len());
            let mut md5s = Md5::new();
            for (i, (n, etag)) in parts.iter().enumerate() {
                let p =
                    u.parts.get(n).ok_or_else(|| RequestError::InvalidPart(format!("part {n} was not uploaded")))?;
                let have = format!("\"{}\"", hex::encode(p.layout.md5));
                if !etag_matches(&have, etag) {
                    return Err(RequestError::InvalidPart(format!("part {n} has ETag {have}, not {etag}")).into());
                }
                if i + 1 < parts.len() && p.layout.size < MIN_PART_BYTES {
                    return Err(RequestError::EntityTooSmall { part_number: *n, size: p.layout.size }.into());
                }
                md5s.update(p.layout.md5);
                layouts.push(p.layout.clone());
            }
            let md5: [u8; 16] = md5s.finalize().into();
            (layouts, md5, u.headers.clone())
        };
        let size = layouts.iter().map(|l| l.size).sum();
        let meta = ObjectMeta {
            size,
            md5,
            parts_count: parts.len() as u32,
            mtime_ms: unix_ms(),
            headers: ObjectMeta::pack_headers(headers),
            data: DataLoc::Parts(layouts.into_boxed_slice()),
        };
        let info = ObjectInfo::from_meta(&bucket, &key, &meta);
        self.admit_write()?;
        let rec = Record::ObjectPut {
            bucket: bucket.clone(),
            key: key.clone(),
            meta,
            inline: Vec::new(),
            completes: Some(upload_id),
        };
        self.commit(rec, Some((bucket, key))).await?;
        Ok(info)
    }

    pub async fn abort_upload(self: Rc<Self>, bucket: String, key: String, upload_id: String) -> Result<()> {
        self.ctx.bucket_exists(&bucket)?;
        self.upload_of(&bucket, &key, &upload_id)?;
        self.admit_write()?;
        self.commit(Record::UploadEnd { upload_id, aborted: true }, None).await
    }

    pub fn list_parts(&self, bucket: &str, key: &str, upload_id: &str) -> Result<(ObjectHeaders, Vec<PartInfo>)> {
        self.ctx.bucket_exists(bucket)?;
        self.upload_of(bucket, key, upload_id)?;
        let st = self.state.borrow();
        let u = st.uploads.get(upload_id).ok_or_else(|| RequestError::NoSuchUpload(upload_id.into()))?;
        let parts = u
            .parts
            .values()
            .map(|p| PartInfo {
                number: p.number,
                etag: format!("\"{}\"", hex::encode(p.layout.md5)),
                size: p.layout.size,
                mtime_ms: p.mtime_ms,
                checksum: p.checksum.clone(),
            })
            .collect();
        Ok((u.headers.clone(), parts))
    }

    pub fn list_uploads(&self, bucket: &str, q: &UploadListQuery) -> Vec<UploadInfo> {
        let st = self.state.borrow();
        let mut v: Vec<UploadInfo> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.bucket == bucket && u.key.starts_with(&q.prefix))
            .map(|(id, u)| UploadInfo {
                bucket: u.bucket.clone(),
                key: u.key.clone(),
                upload_id: id.clone(),
                initiated_ms: u.initiated_ms,
            })
            .filter(|u| upload_after(u, q))
            .collect();
        v.sort_by(|a, b| (&a.key, a.initiated_ms, &a.upload_id).cmp(&(&b.key, b.initiated_ms, &b.upload_id)));
        v.truncate(q.max_uploads.saturating_add(1));
        v
    }
}

pub fn upload_after(u: &UploadInfo, q: &UploadListQuery) -> bool {
    match (&q.key_marker, &q.upload_id_marker) {
        (None, _) => true,
        (Some(km), None) => u.key.as_str() > km.as_str(),
        (Some(km), Some(um)) => u.key.as_str() > km.as_str() || (u.key == *km && u.upload_id.as_str() > um.as_str()),
    }
}

/// Compare ETags, ignoring quotes and accepting `*`.
pub fn etag_matches(have: &str, want: &str) -> bool {
    let t = |s: &str| s.trim().trim_start_matches("W/").trim_matches('"').to_string();
    want.trim() == "*" || want.split(',').any(|w| t(w) == t(have))
}

pub fn check_key(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(RequestError::KeyTooLong(key.len()).into());
    }
    names::check_key_characters(key).map_err(|e| RequestError::InvalidKey(e.to_string()))?;
    if key.is_empty() {
        return Err(RequestError::NoSuchKey { bucket: String::new(), key: String::new() }.into());
    }
    Ok(())
}

fn check_headers(h: &ObjectHeaders) -> Result<()> {
    let n: usize = h.user.iter().map(|(k, v)| k.len() + v.len()).sum();
    if n > MAX_USER_METADATA_BYTES {
        return Err(RequestError::MetadataTooLarge(n).into());
    }
    Ok(())
}
