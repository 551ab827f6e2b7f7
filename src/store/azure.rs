//! Azure Blob Storage's block uploads behind the multipart calls: no upload to create (the ID is
//! 16 random hex digits, the prefix of its block IDs), Get Block List for ListParts, Put Block
//! List for CompleteMultipartUpload (which sets the blob's type and metadata from the token: the
//! client's blocks carry none), and an abort that drops the upload's own staged blob.
//!
//! Spec: <https://learn.microsoft.com/rest/api/storageservices/put-block-list>,
//! <https://learn.microsoft.com/rest/api/storageservices/get-block-list>.

use reqwest::Method as HttpMethod;
use serde::Deserialize;

use super::{Call, Completion, StoreClient, StoreError, parse_xml, unquote, xml_escape};

/// A token's upload ID that is not one this gateway made for Azure: the upload is unknown here.
fn unknown_upload(store: &Store, operation: &'static str) -> StoreError {
    StoreError::Refused {
        store: store.name.clone(),
        operation,
        status: 404,
        code: "NoSuchUpload".into(),
        message: "not an Azure block upload of this gateway".into(),
    }
}
use crate::sign::Store;
use crate::sign::azure;
use crate::upload::ListedPart;

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct BlockList {
    #[serde(default)]
    uncommitted_blocks: Blocks,
}

#[derive(Deserialize, Default)]
struct Blocks {
    #[serde(rename = "Block", default)]
    blocks: Vec<Block>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Block {
    name: String,
    size: u64,
}

impl StoreClient {
    /// This upload's uncommitted blocks, as parts; another upload's blocks are not listed.
    pub(super) async fn azure_blocks(
        &self,
        store: &Store,
        container: &str,
        blob: &str,
        upload_id: &str,
    ) -> Result<Vec<ListedPart>, StoreError> {
        if !azure::is_upload_id(upload_id) {
            return Err(unknown_upload(store, "GetBlockList"));
        }
        let call = Call::new("GetBlockList", HttpMethod::GET, container, blob)
            .params(&[("comp", "blocklist"), ("blocklisttype", "uncommitted")]);
        let answer = match self.send(store, call, Vec::new()).await {
            Ok(answer) => answer,
            // No block yet: no blob either.
            Err(StoreError::Refused { status: 404, .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let list: BlockList = parse_xml(store, "GetBlockList", &answer.body)?;
        Ok(list
            .uncommitted_blocks
            .blocks
            .into_iter()
            .filter_map(|block| {
                Some(ListedPart {
                    part_number: azure::part_number(upload_id, &block.name)?,
                    size: block.size,
                    etag: None,
                })
            })
            .collect())
    }

    /// Commits the listed blocks in part order with the blob's headers (`expect.headers`, S3's
    /// names; `If-None-Match: *` for `overwrite: false`); returns the blob's ETag.
    pub(super) async fn azure_commit(
        &self,
        store: &Store,
        container: &str,
        blob: &str,
        upload_id: &str,
        parts: &[ListedPart],
        expect: Completion,
    ) -> Result<Option<String>, StoreError> {
        if !azure::is_upload_id(upload_id) {
            return Err(unknown_upload(store, "PutBlockList"));
        }
        let mut body = String::from(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>"#);
        for part in parts {
            let id = azure::block_id(upload_id, part.part_number);
            body.push_str(&format!("<Uncommitted>{}</Uncommitted>", xml_escape(&id)));
        }
        body.push_str("</BlockList>");
        let headers: Vec<(String, String)> = expect
            .headers
            .iter()
            .map(|(name, value)| (azure::commit_header(name).into_owned(), value.clone()))
            .collect();
        let mut headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        if expect.no_overwrite {
            headers.push(("If-None-Match", "*"));
        }
        let call = Call::new("PutBlockList", HttpMethod::PUT, container, blob)
            .params(&[("comp", "blocklist")])
            .headers(&headers)
            .long();
        let answer = self.send(store, call, body.into_bytes()).await?;
        Ok(answer.headers.get("etag").and_then(|v| v.to_str().ok()).map(unquote))
    }

    /// Drops an upload's uncommitted blocks: an empty block list committed over its own staged
    /// blob (unique to the upload), then the blob deleted.
    pub(super) async fn azure_abort(
        &self,
        store: &Store,
        container: &str,
        blob: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        if !azure::is_upload_id(upload_id) {
            return Ok(());
        }
        let body = r#"<?xml version="1.0" encoding="utf-8"?><BlockList></BlockList>"#;
        let call = Call::new("PutBlockList", HttpMethod::PUT, container, blob).params(&[("comp", "blocklist")]);
        self.send(store, call, body.as_bytes().to_vec()).await?;
        self.delete(store, container, blob).await
    }
}
