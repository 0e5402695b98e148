//! Entry points for the fuzz target `fuzz/fuzz_targets/kv_records.rs`: the decoders of the keyspace's
//! stored records (metadata records, collection headers, expiry index keys), which a damaged or foreign
//! data directory can feed anything. Errors are expected; a panic is the bug.

use super::{CollectionHeader, Entry, split_expire_key};

/// `data` as a metadata record, a collection payload and an expiry index key. A record that decodes is
/// encoded again, under its own index deadline, and must decode to the same entry.
pub fn decode(data: &[u8]) {
    if let Ok(entry) = Entry::decode(bytes::Bytes::copy_from_slice(data)) {
        let _ = entry.index_at();
        let again = Entry::decode(entry.encode_listed(entry.index_at()).freeze())
            .expect("a re-encoded record decodes");
        assert_eq!(again.kind, entry.kind);
        assert_eq!(again.expire_at_ms, entry.expire_at_ms);
        assert_eq!(again.index_at(), entry.index_at());
        assert_eq!(again.payload, entry.payload);
        let _ = CollectionHeader::from_payload(&entry.payload);
    }
    let _ = CollectionHeader::from_payload(data);
    let _ = split_expire_key(data);
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_decode_without_panicking() {
        let mut seeds: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0x80],
            vec![0x80, 0, 0, 0, 0, 0, 0, 0, 5],
            vec![0x83; 17],
            vec![0x83; 40],
            vec![2; 9],
            vec![9; 30],
            b"x\0\0\0\0\0\0\0\x01key".to_vec(),
        ];
        // A record with an index deadline later than its expiry, and one with expiry 0.
        let mut r = vec![0x80];
        r.extend_from_slice(&5u64.to_be_bytes());
        r.extend_from_slice(&9u64.to_be_bytes());
        r.extend_from_slice(b"payload");
        seeds.push(r);
        let mut r = vec![0x81];
        r.extend_from_slice(&0u64.to_be_bytes());
        r.extend_from_slice(&3u64.to_be_bytes());
        r.extend_from_slice(&[0; 16]);
        seeds.push(r);
        for s in seeds {
            super::decode(&s);
        }
    }
}
