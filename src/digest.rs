//! The body digest the HTTP and gRPC front ends show their consumers: MD5 in upper-case hex,
//! as the HTTP SDKs and the 5.x clients check it.

use md5::{Digest, Md5};
use std::fmt::Write;

pub(crate) fn md5_upper(body: &[u8]) -> String {
    let mut s = String::with_capacity(32);
    for b in Md5::digest(body) {
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn md5_is_upper_hex() {
        assert_eq!(super::md5_upper(b""), "D41D8CD98F00B204E9800998ECF8427E");
    }
}
