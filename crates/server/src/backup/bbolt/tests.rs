use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};

use super::*;

/// A seeded generator, so the damaged inputs are the same on every run.
struct Rng(StdRng);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.random()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }
}

fn value(bytes: &[u8]) -> Node {
    Node::Value(bytes.to_vec())
}

/// A tree with everything the writer must handle: many keys (branch levels), values bigger
/// than a page (overflow), an empty bucket, small (inline) and large nested buckets, and a
/// bucket inside a bucket.
fn sample() -> Tree {
    let mut root = BTreeMap::new();
    let mut key = BTreeMap::new();
    for i in 0..3000u64 {
        let mut k = i.to_be_bytes().to_vec();
        k.push(b'_');
        let v = format!("value-{i}").repeat((i % 7) as usize + 1);
        key.insert(k, value(v.as_bytes()));
    }
    key.insert(b"\xffbig".to_vec(), Node::Value(vec![7u8; 20_000]));
    root.insert(b"key".to_vec(), Node::Bucket(Tree(key)));
    root.insert(b"empty".to_vec(), Node::Bucket(Tree::default()));
    let mut small = BTreeMap::new();
    small.insert(b"a".to_vec(), value(b"1"));
    small.insert(b"b".to_vec(), value(b""));
    root.insert(b"small".to_vec(), Node::Bucket(Tree(small.clone())));
    let mut outer = BTreeMap::new();
    outer.insert(b"inner".to_vec(), Node::Bucket(Tree(small)));
    outer.insert(b"x".to_vec(), value(b"y"));
    root.insert(b"outer".to_vec(), Node::Bucket(Tree(outer)));
    Tree(root)
}

#[test]
fn round_trips_every_shape() {
    let t = sample();
    for page_size in [4096, 1024, 65536] {
        let file = t.to_file(page_size).unwrap();
        assert_eq!(file.len() % page_size, 0);
        let db = Db::open(&file).unwrap();
        assert_eq!(db.size(), file.len() as u64);
        assert_eq!(db.meta().page_size as usize, page_size);
        db.check().unwrap();
        assert_eq!(Tree::read(&db).unwrap(), t, "page size {page_size}");
    }
    // The same from a file, read page by page.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, t.to_file(4096).unwrap()).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let db = Db::open(Source::file(&f).unwrap()).unwrap();
    assert_eq!(Tree::read(&db).unwrap(), t);
}

#[test]
fn small_buckets_are_inline_and_large_ones_are_not() {
    let file = sample().to_file(4096).unwrap();
    let db = Db::open(&file).unwrap();
    // bbolt's rule: no nested buckets and at most a quarter page.
    let stored = |name: &[u8]| {
        let root = db.meta().root.root as usize * 4096;
        let page = &file[root..root + 4096];
        let at = page.windows(name.len()).position(|w| w == name).unwrap() + name.len();
        page::u64_at(page, at).unwrap()
    };
    assert_eq!(stored(b"small"), 0, "inline");
    assert_eq!(stored(b"empty"), 0, "inline");
    assert_ne!(stored(b"outer"), 0, "holds a bucket");
    assert_ne!(stored(b"key"), 0, "larger than a page");
    assert!(db.root().bucket(b"nope").unwrap().is_none());
    assert_eq!(
        db.root()
            .bucket(b"small")
            .unwrap()
            .unwrap()
            .value(b"a")
            .unwrap(),
        Some(b"1".to_vec())
    );
}

#[test]
fn picks_the_newest_valid_meta() {
    let mut file = sample().to_file(4096).unwrap();
    // Meta 1 (txid 2) is newest; damage it and meta 0 takes over.
    file[4096 + 16 + 20] ^= 0xff;
    let db = Db::open(&file).unwrap();
    assert_eq!(db.meta().txid, 1);
    // Both damaged: the error names page 0.
    file[16 + 20] ^= 0xff;
    let e = Db::open(&file).err().unwrap().to_string();
    assert_eq!(e, "bbolt: page 0: meta checksum mismatch");
}

#[test]
fn errors_name_the_page() {
    let mut file = sample().to_file(4096).unwrap();
    let db = Db::open(&file).unwrap();
    let root = db.meta().root.root as usize;
    // Make the first leaf element of the root page claim a huge key.
    let at = root * 4096 + 16 + 8;
    file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let db = Db::open(&file).unwrap();
    let e = Tree::read(&db).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("bbolt: page {root}: leaf element 0 runs past the page end")
    );

    let file = sample().to_file(4096).unwrap();
    let e = Db::open(&file[..file.len() - 4096])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
}

#[test]
fn refuses_cycles() {
    let file = sample().to_file(4096).unwrap();
    let mut bad = file.clone();
    // Find any branch page and make its first child point at itself.
    let pages = file.len() / 4096;
    let branch = (2..pages)
        .find(|&p| page::u16_at(&file, p * 4096 + 8) == Some(page::BRANCH_PAGE))
        .expect("the sample has branch pages");
    bad[branch * 4096 + 16 + 8..branch * 4096 + 16 + 16]
        .copy_from_slice(&(branch as u64).to_le_bytes());
    let db = Db::open(&bad).unwrap();
    let e = db.check().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("bbolt: page {branch}: page reached twice")),
        "{e}"
    );
}

/// Reads everything a restore would: the check and every bucket.
fn read_all(b: &[u8]) -> Result<()> {
    Tree::read(&Db::open(b)?)?;
    Ok(())
}

#[test]
fn damaged_files_give_errors_not_panics() {
    let good = sample().to_file(1024).unwrap();
    read_all(&good).unwrap();
    let mut rng = Rng(StdRng::seed_from_u64(0x5eed));
    for round in 0..300 {
        let mut b = good.clone();
        match round % 3 {
            0 => b.truncate(rng.below(good.len())),
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            _ => {
                // Random bytes in a page header or element region (where damage matters most).
                let page = 2 + rng.below(b.len() / 1024 - 2);
                for i in 0..32 {
                    b[page * 1024 + i] = rng.next() as u8;
                }
            }
        }
        // Flips inside keys and values are not detectable (bbolt keeps no data checksums);
        // anything else must come back as an error. Either way: no panic.
        let _ = read_all(&b);
    }
    for len in [0usize, 10, 100, 5000, 70_000] {
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(read_all(&b).is_err());
    }
    // Random pages behind two valid meta pages.
    for _ in 0..50 {
        let mut b = good.clone();
        for x in b.iter_mut().skip(2 * 1024) {
            *x = rng.next() as u8;
        }
        assert!(read_all(&b).is_err());
    }
}

#[test]
fn writer_refuses_unsorted_and_empty_keys() {
    let mut w = Writer::new(std::io::Cursor::new(Vec::new()), 4096).unwrap();
    let mut b = BucketWriter::new();
    b.put(&mut w, b"b", b"").unwrap();
    assert!(b.put(&mut w, b"a", b"").is_err());
    assert!(b.put(&mut w, b"b", b"").is_err());
    assert!(b.put(&mut w, b"", b"").is_err());
}

#[test]
fn refuses_a_bucket_that_contains_its_parent() {
    let mut file = sample().to_file(4096).unwrap();
    let root = Db::open(&file).unwrap().meta().root.root as usize;
    // "outer" holds a bucket, so its value is a header naming its own root page: point it at
    // the root bucket's page, making the root its own grandchild.
    let page = &mut file[root * 4096..(root + 1) * 4096];
    let at = page.windows(5).position(|w| w == b"outer").unwrap() + 5;
    page[at..at + 8].copy_from_slice(&(root as u64).to_le_bytes());
    let e = Tree::read(&Db::open(&file).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("page reached twice"), "{e}");
}
