//! The API's CNI requests and replies. A CNI attachment is a pod with a container ID:
//! the runtime names it by `(container ID, interface name)`, never by pod name.

use serde::{Deserialize, Serialize};

use super::PodInfo;

/// One attachment as the runtime names it (CNI's `cni.dev/valid-attachments` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// What CNI CHECK found: no pod for the attachment, or the pod and what is wrong
/// with it (nothing when it is healthy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckReport {
    pub pod: Option<PodInfo>,
    pub problems: Vec<String>,
}
