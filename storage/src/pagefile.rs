//! The daemon's page file: the image of every checkpointed page, each at
//! `page id × PAGE_SIZE` (a sparse file), sealed with its checksum and
//! verified when read back.
//!
//! A checkpoint writes the pages that changed since the previous one, syncs
//! the file, and only then records its LSN in the state file; so after a
//! crash an image may be newer than the recorded checkpoint (the applicator
//! skips records an image already holds) but never older.

use crate::ids::PageId;
use crate::page::{PAGE_SIZE, Page};
use crate::versions::BaseImages;
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

const PAGE_FILE: &str = "pages.dat";

/// The page file of one daemon.
#[derive(Debug)]
pub struct PageFile {
    file: File,
    /// Pages with an image in the file.
    written: Mutex<BTreeSet<PageId>>,
}

impl PageFile {
    /// Opens (or creates) the page file in `dir` and finds its pages.
    pub fn open(dir: &Path) -> io::Result<PageFile> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join(PAGE_FILE))?;
        let pages = file.metadata()?.len() / PAGE_SIZE as u64;
        let mut written = BTreeSet::new();
        let mut header = [0u8; 32];
        for id in 0..pages {
            file.read_exact_at(&mut header, id * PAGE_SIZE as u64)?;
            if header.iter().any(|b| *b != 0) {
                written.insert(PageId(id));
            }
        }
        Ok(PageFile { file, written: Mutex::new(written) })
    }

    fn written(&self) -> MutexGuard<'_, BTreeSet<PageId>> {
        self.written.lock().expect("page file index poisoned")
    }

    /// Writes sealed images and syncs them.
    pub fn write_synced(&self, pages: &[(PageId, &Page)]) -> io::Result<()> {
        for (id, page) in pages {
            let mut sealed = Page::clone(page);
            sealed.seal();
            self.file.write_all_at(sealed.as_bytes(), offset(*id)?)?;
        }
        self.file.sync_data()?;
        self.written().extend(pages.iter().map(|(id, _)| *id));
        Ok(())
    }

    /// Number of pages in the file.
    pub fn len(&self) -> usize {
        self.written().len()
    }

    /// True when no page was ever written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn offset(page: PageId) -> io::Result<u64> {
    page.0
        .checked_mul(PAGE_SIZE as u64)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("page id {page} out of range")))
}

impl BaseImages for PageFile {
    fn read(&self, page: PageId) -> Result<Option<Page>, String> {
        if !self.written().contains(&page) {
            return Ok(None);
        }
        let mut bytes = vec![0u8; PAGE_SIZE];
        let at = offset(page).map_err(|e| e.to_string())?;
        self.file.read_exact_at(&mut bytes, at).map_err(|e| format!("read failed: {e}"))?;
        let image = Page::from_bytes(&bytes).map_err(|e| e.to_string())?;
        image.verify().map_err(|e| format!("{e} (the page file is corrupt)"))?;
        Ok(Some(image))
    }

    fn page_ids(&self) -> Vec<PageId> {
        self.written().iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Lsn;
    use crate::page::PageKind;

    fn heap_page(lsn: u64, data: &[u8]) -> Page {
        let mut page = Page::empty();
        page.init(PageKind::Heap);
        page.insert(0, data).unwrap();
        page.set_lsn(Lsn(lsn));
        page
    }

    #[test]
    fn images_survive_reopening_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let file = PageFile::open(dir.path()).unwrap();
        let (a, b) = (heap_page(5, b"five"), heap_page(9, b"nine"));
        file.write_synced(&[(PageId(3), &a), (PageId(40), &b)]).unwrap();
        assert_eq!(file.read(PageId(4)).unwrap(), None);
        drop(file);

        let file = PageFile::open(dir.path()).unwrap();
        assert_eq!(file.page_ids(), vec![PageId(3), PageId(40)]);
        let read = file.read(PageId(40)).unwrap().unwrap();
        assert_eq!((read.lsn(), read.tuple(0)), (Lsn(9), Some(&b"nine"[..])));
        drop(file);

        let raw = OpenOptions::new().write(true).open(dir.path().join(PAGE_FILE)).unwrap();
        raw.write_all_at(b"X", 3 * PAGE_SIZE as u64 + 500).unwrap();
        let file = PageFile::open(dir.path()).unwrap();
        let err = file.read(PageId(3)).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
    }
}
