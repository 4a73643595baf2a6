//! The store's garbage collection: the release objects and images no kept
//! release uses. It must not remove anything a kept release needs: when a
//! kept release's object cannot be read, it removes nothing.

use super::{image_name, io_err, release_name, Collected, Entry, ObjectError, Store, StoreError, IMAGES, RELEASES};
use crate::release::durable::Io;
use crate::release::manifest::Digest;

impl<I: Io> Store<I> {
    /// Remove every release object and image that no kept release (current,
    /// previous) uses, and any temporary files. Removes nothing when a kept
    /// release's object cannot be read.
    pub fn gc(&mut self) -> Result<Collected, StoreError> {
        if self.unread {
            return Err(StoreError::Unread);
        }
        let mut keep_images: Vec<Digest> = Vec::new();
        let kept: Vec<Entry> = self.record.kept().collect();
        for e in &kept {
            let bytes = self.object(e).map_err(|error| StoreError::Kept { digest: e.digest, error })?;
            let r = crate::release::peek(&bytes).map_err(|r| StoreError::Kept { digest: e.digest, error: ObjectError::Rejected(r) })?;
            keep_images.extend(r.images.iter().map(|i| i.sha256));
        }
        let keep_releases: Vec<String> = kept.iter().map(|e| release_name(&e.digest)).collect();
        let keep_images: Vec<String> = keep_images.iter().map(image_name).collect();
        let mut out = Collected::default();
        for (sub, keep, count) in [(RELEASES, &keep_releases, &mut out.releases), (IMAGES, &keep_images, &mut out.images)] {
            let dir = self.dir.join(sub);
            let entries = std::fs::read_dir(&dir).map_err(io_err("list", &dir))?;
            let mut removed = 0;
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_str().is_some_and(|n| keep.iter().any(|k| k == n)) {
                    continue;
                }
                let path = e.path();
                self.io.remove_file(&path).map_err(io_err("remove", &path))?;
                removed += 1;
            }
            if removed > 0 {
                self.io.sync_dir(&dir).map_err(io_err("fsync", &dir))?;
            }
            *count = removed;
        }
        Ok(out)
    }
}
