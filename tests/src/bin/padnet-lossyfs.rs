//! A FUSE file system that loses what was not fsynced when "the power goes", for
//! power-loss tests. `padnet-lossyfs BACKING_DIR MOUNTPOINT` serves BACKING_DIR's
//! contents at MOUNTPOINT, but every change lives in memory until it is synced:
//! a file's data, size and mode by fsync/fdatasync of that file, a directory's
//! entries (create, mknod, mkdir, rename, unlink, rmdir) by fsync of that
//! directory (the strict POSIX model: no journal commits a new name for you).
//! Reads see the live view (what the page cache would show). Signals:
//! SIGUSR1 — the power goes: everything not synced is dropped, the synced state
//! is written to BACKING_DIR and served from then on (the daemon keeps running;
//! the caller must have killed every process using the mount first);
//! SIGUSR2 — `sync`: everything becomes durable; SIGTERM/SIGINT — unmount (the
//! synced state is saved; unsynced changes are lost). Each prints one line on
//! stdout when done. Mounted with direct I/O and no attribute caching, so the
//! kernel neither hides reads nor batches writes; sync_file_range sends no FSYNC.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

const ROOT: u64 = 1;
const CHUNK: usize = 64 << 10;
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const TTL: Duration = Duration::ZERO;

/// File contents in shared chunks, so a synced copy costs no copying until
/// one side changes a chunk.
#[derive(Clone, Default, PartialEq)]
struct Data {
    size: u64,
    chunks: Vec<Arc<Vec<u8>>>,
}

impl Data {
    fn read(&self, off: u64, len: usize) -> Vec<u8> {
        let end = self.size.min(off.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(off) as usize);
        let mut pos = off;
        while pos < end {
            let (c, i) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = (CHUNK - i).min((end - pos) as usize);
            out.extend_from_slice(&self.chunks[c][i..i + n]);
            pos += n as u64;
        }
        out
    }

    fn resize(&mut self, size: u64) {
        let need = size.div_ceil(CHUNK as u64) as usize;
        if size < self.size {
            self.chunks.truncate(need);
            let tail = (size % CHUNK as u64) as usize;
            if tail != 0 {
                if let Some(last) = self.chunks.last_mut() {
                    Arc::make_mut(last)[tail..].fill(0);
                }
            }
        }
        while self.chunks.len() < need {
            self.chunks.push(Arc::new(vec![0; CHUNK]));
        }
        self.size = size;
    }

    fn write(&mut self, off: u64, data: &[u8]) {
        let end = off + data.len() as u64;
        if end > self.size {
            self.resize(end);
        }
        let mut done = 0;
        while done < data.len() {
            let pos = off + done as u64;
            let (c, i) = ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize);
            let n = (CHUNK - i).min(data.len() - done);
            Arc::make_mut(&mut self.chunks[c])[i..i + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }
}

#[derive(Clone, PartialEq)]
enum Body {
    File(Data),
    Dir(BTreeMap<OsString, u64>),
    /// A socket or fifo (mknod): a name with no contents.
    Special,
}

#[derive(Clone, PartialEq)]
struct Node {
    body: Body,
    /// Full st_mode, type bits included.
    mode: u32,
    /// Bumped at every change, to save only changed files.
    version: u64,
}

type Tree = HashMap<u64, Node>;

/// The model: the live view and the durable one. Pure; no FUSE, no disk.
struct Disk {
    live: Tree,
    durable: Tree,
    next_ino: u64,
    next_version: u64,
}

type Res<T> = Result<T, Errno>;

impl Disk {
    fn new(tree: Tree) -> Disk {
        let next_ino = tree.keys().max().copied().unwrap_or(ROOT) + 1;
        Disk {
            durable: tree.clone(),
            live: tree,
            next_ino,
            next_version: 1,
        }
    }

    fn node(&self, ino: u64) -> Res<&Node> {
        self.live.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Res<&mut Node> {
        self.next_version += 1;
        let v = self.next_version;
        let n = self.live.get_mut(&ino).ok_or(Errno::ENOENT)?;
        n.version = v;
        Ok(n)
    }

    fn entries_mut(&mut self, dir: u64) -> Res<&mut BTreeMap<OsString, u64>> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir(e) => Ok(e),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn lookup(&self, dir: u64, name: &OsStr) -> Res<u64> {
        match &self.node(dir)?.body {
            Body::Dir(e) => e.get(name).copied().ok_or(Errno::ENOENT),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Make a new node named `name` in `dir` (create, mknod, mkdir).
    fn make(&mut self, dir: u64, name: &OsStr, mode: u32) -> Res<u64> {
        if self.lookup(dir, name).is_ok() {
            return Err(Errno::EEXIST);
        }
        let body = match mode & S_IFMT {
            S_IFDIR => Body::Dir(BTreeMap::new()),
            S_IFREG => Body::File(Data::default()),
            _ => Body::Special,
        };
        let ino = self.next_ino;
        self.next_ino += 1;
        self.entries_mut(dir)?.insert(name.to_owned(), ino);
        let version = self.next_version;
        self.live.insert(
            ino,
            Node {
                body,
                mode,
                version,
            },
        );
        Ok(ino)
    }

    fn write(&mut self, ino: u64, off: u64, data: &[u8]) -> Res<()> {
        match &mut self.node_mut(ino)?.body {
            Body::File(d) => {
                d.write(off, data);
                Ok(())
            }
            _ => Err(Errno::EISDIR),
        }
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Res<()> {
        match &mut self.node_mut(ino)?.body {
            Body::File(d) => {
                d.resize(size);
                Ok(())
            }
            _ => Err(Errno::EISDIR),
        }
    }

    fn chmod(&mut self, ino: u64, perm: u32) -> Res<()> {
        let n = self.node_mut(ino)?;
        n.mode = (n.mode & S_IFMT) | (perm & 0o7777);
        Ok(())
    }

    fn remove(&mut self, dir: u64, name: &OsStr, want_dir: bool) -> Res<()> {
        let ino = self.lookup(dir, name)?;
        match (&self.node(ino)?.body, want_dir) {
            (Body::Dir(e), true) if !e.is_empty() => return Err(Errno::ENOTEMPTY),
            (Body::Dir(_), false) => return Err(Errno::EISDIR),
            (Body::File(_) | Body::Special, true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.entries_mut(dir)?.remove(name);
        Ok(())
    }

    fn rename(&mut self, dir: u64, name: &OsStr, to: u64, new: &OsStr, noreplace: bool) -> Res<()> {
        let ino = self.lookup(dir, name)?;
        if let Ok(old) = self.lookup(to, new) {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if let Body::Dir(e) = &self.node(old)?.body {
                if !e.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
        }
        self.entries_mut(to)?; // a directory, before anything changes
        self.entries_mut(dir)?.remove(name);
        self.entries_mut(to)?.insert(new.to_owned(), ino);
        Ok(())
    }

    /// fsync of a file: its data, size and mode become durable (not its name).
    fn fsync(&mut self, ino: u64) -> Res<()> {
        let live = self.node(ino)?.clone();
        match self.durable.get_mut(&ino) {
            Some(d) if matches!(live.body, Body::Dir(_)) => d.mode = live.mode,
            Some(d) => *d = live,
            None if matches!(live.body, Body::Dir(_)) => {}
            None => {
                self.durable.insert(ino, live);
            }
        }
        Ok(())
    }

    /// fsync of a directory: its entries become durable. A child never
    /// synced itself becomes durable empty (a file's data is not synced by
    /// its directory).
    fn fsyncdir(&mut self, ino: u64) -> Res<()> {
        let live = self.node(ino)?.clone();
        let Body::Dir(entries) = &live.body else {
            return Err(Errno::ENOTDIR);
        };
        for child in entries.values() {
            if !self.durable.contains_key(child) {
                let mut n = self.node(*child)?.clone();
                match &mut n.body {
                    Body::File(d) => *d = Data::default(),
                    Body::Dir(e) => e.clear(),
                    Body::Special => {}
                }
                self.durable.insert(*child, n);
            }
        }
        let d = self.durable.entry(ino).or_insert_with(|| live.clone());
        d.body = live.body;
        d.mode = live.mode;
        d.version = live.version;
        Ok(())
    }

    /// `sync`: everything live becomes durable.
    fn sync_all(&mut self) {
        gc(&mut self.live);
        self.durable = self.live.clone();
    }

    /// The power goes: drop what was not synced. Returns how many nodes differed.
    fn power_cut(&mut self) -> usize {
        gc(&mut self.durable);
        gc(&mut self.live);
        let lost = self
            .live
            .iter()
            .filter(|(i, n)| {
                self.durable
                    .get(i)
                    .map(|d| d.body != n.body || d.mode != n.mode)
                    != Some(false)
            })
            .count();
        self.live = self.durable.clone();
        lost
    }

    fn attr(&self, ino: u64) -> Res<FileAttr> {
        let n = self.node(ino)?;
        let (kind, size) = match (&n.body, n.mode & S_IFMT) {
            (Body::Dir(_), _) => (FileType::Directory, 0),
            (Body::File(d), _) => (FileType::RegularFile, d.size),
            (Body::Special, 0o010000) => (FileType::NamedPipe, 0),
            (Body::Special, _) => (FileType::Socket, 0),
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(n.version);
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm: (n.mode & 0o7777) as u16,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

/// Drop nodes no name reaches from the root.
fn gc(tree: &mut Tree) {
    let mut seen = HashSet::from([ROOT]);
    let mut todo = vec![ROOT];
    while let Some(i) = todo.pop() {
        if let Some(Node {
            body: Body::Dir(e), ..
        }) = tree.get(&i)
        {
            for c in e.values() {
                if seen.insert(*c) {
                    todo.push(*c);
                }
            }
        }
    }
    tree.retain(|i, _| seen.contains(i));
}

/// Read BACKING_DIR into a tree.
fn load(dir: &Path) -> std::io::Result<Tree> {
    fn walk(p: &Path, ino: u64, tree: &mut Tree, next: &mut u64) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        let body = if meta.is_dir() {
            let mut e = BTreeMap::new();
            for ent in std::fs::read_dir(p)? {
                let ent = ent?;
                *next += 1;
                let child = *next;
                walk(&ent.path(), child, tree, next)?;
                e.insert(ent.file_name(), child);
            }
            Body::Dir(e)
        } else if meta.is_file() {
            let mut d = Data::default();
            d.write(0, &std::fs::read(p)?);
            d.resize(meta.len());
            Body::File(d)
        } else {
            return Ok(()); // sockets do not outlive a reboot
        };
        tree.insert(
            ino,
            Node {
                body,
                mode: meta.mode(),
                version: 0,
            },
        );
        Ok(())
    }
    let mut tree = Tree::new();
    let mut next = ROOT;
    walk(dir, ROOT, &mut tree, &mut next)?;
    tree.retain(|_, _| true);
    // Entries naming skipped (special) files are dropped.
    let keys: HashSet<u64> = tree.keys().copied().collect();
    for n in tree.values_mut() {
        if let Body::Dir(e) = &mut n.body {
            e.retain(|_, c| keys.contains(c));
        }
    }
    Ok(tree)
}

/// Write the durable tree to BACKING_DIR: changed files, new directories;
/// whatever is not in the tree is removed. `saved` maps paths to versions written.
fn save(tree: &Tree, dir: &Path, saved: &mut HashMap<PathBuf, u64>) -> std::io::Result<()> {
    let mut keep = HashSet::new();
    let mut todo = vec![(ROOT, dir.to_path_buf())];
    while let Some((ino, path)) = todo.pop() {
        let Some(n) = tree.get(&ino) else { continue };
        keep.insert(path.clone());
        match &n.body {
            Body::Dir(e) => {
                if !path.is_dir() {
                    let _ = std::fs::remove_file(&path);
                    std::fs::create_dir(&path)?;
                }
                todo.extend(e.iter().map(|(name, c)| (*c, path.join(name))));
            }
            Body::File(d) if saved.get(&path) != Some(&n.version) || !path.is_file() => {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                }
                std::fs::write(&path, d.read(0, d.size as usize))?;
                saved.insert(path.clone(), n.version);
            }
            _ => {}
        }
        if !matches!(n.body, Body::Special) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(n.mode & 0o7777))?;
        }
    }
    fn prune(p: &Path, keep: &HashSet<PathBuf>) -> std::io::Result<()> {
        for ent in std::fs::read_dir(p)? {
            let path = ent?.path();
            if !keep.contains(&path) {
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            } else if path.is_dir() {
                prune(&path, keep)?;
            }
        }
        Ok(())
    }
    prune(dir, &keep)?;
    saved.retain(|p, _| keep.contains(p));
    Ok(())
}

struct LossyFs(Arc<Mutex<Disk>>);

impl LossyFs {
    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry(reply: ReplyEntry, r: Res<FileAttr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl fuser::Filesystem for LossyFs {
    fn lookup(&self, _: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let d = self.disk();
        entry(reply, d.lookup(parent.0, name).and_then(|i| d.attr(i)));
    }

    fn getattr(&self, _: &Request, ino: INodeNo, _: Option<FileHandle>, reply: ReplyAttr) {
        match self.disk().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _: Option<u32>,
        _: Option<u32>,
        size: Option<u64>,
        _: Option<TimeOrNow>,
        _: Option<TimeOrNow>,
        _: Option<SystemTime>,
        _: Option<FileHandle>,
        _: Option<SystemTime>,
        _: Option<SystemTime>,
        _: Option<SystemTime>,
        _: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut d = self.disk();
        let r = (|| {
            if let Some(m) = mode {
                d.chmod(ino.0, m)?;
            }
            if let Some(s) = size {
                d.truncate(ino.0, s)?;
            }
            d.attr(ino.0)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _: &Request,
        p: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _: u32,
        reply: ReplyEntry,
    ) {
        let mut d = self.disk();
        entry(
            reply,
            d.make(p.0, name, mode & !umask).and_then(|i| d.attr(i)),
        );
    }

    fn mkdir(
        &self,
        _: &Request,
        p: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut d = self.disk();
        let m = S_IFDIR | (mode & !umask & 0o7777);
        entry(reply, d.make(p.0, name, m).and_then(|i| d.attr(i)));
    }

    fn unlink(&self, _: &Request, p: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.disk().remove(p.0, name, false));
    }

    fn rmdir(&self, _: &Request, p: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.disk().remove(p.0, name, true));
    }

    fn rename(
        &self,
        _: &Request,
        p: INodeNo,
        name: &OsStr,
        np: INodeNo,
        nn: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        empty(reply, self.disk().rename(p.0, name, np.0, nn, noreplace));
    }

    fn open(&self, _: &Request, ino: INodeNo, _: OpenFlags, reply: ReplyOpen) {
        match self.disk().node(ino.0) {
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        off: u64,
        size: u32,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match &self.disk().node(ino.0).map(|n| &n.body) {
            Ok(Body::File(d)) => reply.data(&d.read(off, size as usize)),
            Ok(_) => reply.error(Errno::EISDIR),
            Err(e) => reply.error(*e),
        }
    }

    fn write(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        off: u64,
        data: &[u8],
        _: WriteFlags,
        _: OpenFlags,
        _: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.disk().write(ino.0, off, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _: &Request, _: INodeNo, _: FileHandle, _: LockOwner, reply: ReplyEmpty) {
        reply.ok() // close(2) makes nothing durable
    }

    fn fsync(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        empty(reply, self.disk().fsync(ino.0));
    }

    fn readdir(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        off: u64,
        mut reply: ReplyDirectory,
    ) {
        let d = self.disk();
        let Ok(Body::Dir(e)) = d.node(ino.0).map(|n| &n.body) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (ROOT, FileType::Directory, "..".into()),
        ];
        for (name, c) in e {
            if let Ok(a) = d.attr(*c) {
                all.push((*c, a.kind, name.clone()));
            }
        }
        for (i, (c, kind, name)) in all.iter().enumerate().skip(off as usize) {
            if reply.add(INodeNo(*c), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _: &Request, ino: INodeNo, _: FileHandle, _: bool, reply: ReplyEmpty) {
        empty(reply, self.disk().fsyncdir(ino.0));
    }

    fn statfs(&self, _: &Request, _: INodeNo, reply: fuser::ReplyStatfs) {
        // Memory-backed: claim 16 GiB free so space checks pass.
        reply.statfs(4 << 20, 4 << 20, 4 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _: &Request, ino: INodeNo, _: fuser::AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.disk().node(ino.0).map(|_| ()));
    }

    fn create(
        &self,
        _: &Request,
        p: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _: i32,
        reply: ReplyCreate,
    ) {
        let mut d = self.disk();
        match d
            .make(p.0, name, S_IFREG | (mode & !umask & 0o7777))
            .and_then(|i| d.attr(i))
        {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _: &Request,
        ino: INodeNo,
        _: FileHandle,
        off: u64,
        len: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        const KEEP_SIZE: i32 = 1;
        const PUNCH_HOLE: i32 = 2;
        let mut d = self.disk();
        let r = match mode {
            0 => d.attr(ino.0).and_then(|a| {
                if off + len > a.size {
                    d.truncate(ino.0, off + len)
                } else {
                    Ok(())
                }
            }),
            m if m == KEEP_SIZE | PUNCH_HOLE => d.attr(ino.0).and_then(|a| {
                let end = a.size.min(off + len);
                let zeros = vec![0u8; end.saturating_sub(off) as usize];
                if zeros.is_empty() {
                    Ok(())
                } else {
                    d.write(ino.0, off, &zeros)
                }
            }),
            _ => Err(Errno::EOPNOTSUPP),
        };
        empty(reply, r);
    }
}

fn main() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [backing, mountpoint] = args.as_slice() else {
        anyhow::bail!("usage: padnet-lossyfs BACKING_DIR MOUNTPOINT");
    };
    let disk = Arc::new(Mutex::new(Disk::new(load(backing)?)));
    let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2, SIGTERM, SIGINT])?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("padnet-lossyfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    let session = fuser::spawn_mount(LossyFs(disk.clone()), mountpoint, &config)?;
    let mut saved = HashMap::new();
    let say = |s: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    };
    say(format!("padnet-lossyfs mounted {}", mountpoint.display()));
    for sig in signals.forever() {
        let mut d = disk.lock().unwrap_or_else(|p| p.into_inner());
        match sig {
            SIGUSR1 => {
                let lost = d.power_cut();
                save(&d.durable, backing, &mut saved)?;
                say(format!(
                    "padnet-lossyfs power cut: {lost} files or directories lost changes"
                ));
            }
            SIGUSR2 => {
                d.sync_all();
                save(&d.durable, backing, &mut saved)?;
                say("padnet-lossyfs synced".into());
            }
            _ => {
                gc(&mut d.durable);
                save(&d.durable, backing, &mut saved)?;
                drop(d);
                session.umount_and_join()?;
                say("padnet-lossyfs unmounted".into());
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk() -> Disk {
        let root = Node {
            body: Body::Dir(BTreeMap::new()),
            mode: S_IFDIR | 0o755,
            version: 0,
        };
        Disk::new(Tree::from([(ROOT, root)]))
    }

    fn content(d: &Disk, dir: u64, name: &str) -> Option<Vec<u8>> {
        let i = d.lookup(dir, OsStr::new(name)).ok()?;
        match &d.node(i).ok()?.body {
            Body::File(f) => Some(f.read(0, f.size as usize)),
            _ => None,
        }
    }

    #[test]
    fn data_spans_chunks_and_truncates_with_zeros() {
        let mut f = Data::default();
        f.write(CHUNK as u64 - 2, b"abcd");
        assert_eq!(f.size, CHUNK as u64 + 2);
        assert_eq!(f.read(CHUNK as u64 - 3, 10), b"\0abcd");
        f.resize(CHUNK as u64 - 1);
        f.resize(CHUNK as u64 + 4);
        assert_eq!(f.read(CHUNK as u64 - 2, 10), b"a\0\0\0\0\0");
    }

    #[test]
    fn unsynced_data_and_names_are_lost_at_a_power_cut() {
        let mut d = disk();
        let a = d.make(ROOT, OsStr::new("a"), S_IFREG | 0o600).unwrap();
        d.write(a, 0, b"synced").unwrap();
        d.fsync(a).unwrap();
        d.fsyncdir(ROOT).unwrap();
        d.write(a, 0, b"SYNCED and more").unwrap();
        let b = d.make(ROOT, OsStr::new("b"), S_IFREG | 0o600).unwrap();
        d.write(b, 0, b"fsynced, but its name is not").unwrap();
        d.fsync(b).unwrap();
        assert_eq!(content(&d, ROOT, "a").unwrap(), b"SYNCED and more");
        assert_eq!(d.power_cut(), 3); // a, b and their directory
        assert_eq!(content(&d, ROOT, "a").unwrap(), b"synced");
        assert!(d.lookup(ROOT, OsStr::new("b")).is_err());
    }

    #[test]
    fn a_synced_name_without_synced_data_comes_back_empty() {
        let mut d = disk();
        let a = d.make(ROOT, OsStr::new("a"), S_IFREG | 0o600).unwrap();
        d.write(a, 0, b"data").unwrap();
        d.fsyncdir(ROOT).unwrap();
        d.power_cut();
        assert_eq!(content(&d, ROOT, "a").unwrap(), b"");
    }

    #[test]
    fn rename_is_durable_only_with_its_directories() {
        let mut d = disk();
        let t = d.make(ROOT, OsStr::new("tmp"), S_IFREG | 0o600).unwrap();
        d.write(t, 0, b"new").unwrap();
        d.fsync(t).unwrap();
        let o = d.make(ROOT, OsStr::new("f"), S_IFREG | 0o600).unwrap();
        d.write(o, 0, b"old").unwrap();
        d.sync_all();
        d.rename(ROOT, OsStr::new("tmp"), ROOT, OsStr::new("f"), false)
            .unwrap();
        assert_eq!(content(&d, ROOT, "f").unwrap(), b"new");
        d.power_cut();
        assert_eq!(content(&d, ROOT, "f").unwrap(), b"old");
        d.rename(ROOT, OsStr::new("tmp"), ROOT, OsStr::new("f"), false)
            .unwrap();
        d.fsyncdir(ROOT).unwrap();
        d.power_cut();
        assert_eq!(content(&d, ROOT, "f").unwrap(), b"new");
        assert!(d.lookup(ROOT, OsStr::new("tmp")).is_err());
    }

    #[test]
    fn backing_dir_round_trips_the_durable_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x"), b"x").unwrap();
        let mut d = Disk::new(load(dir.path()).unwrap());
        let sub = d.lookup(ROOT, OsStr::new("sub")).unwrap();
        assert_eq!(content(&d, sub, "x").unwrap(), b"x");
        let y = d.make(sub, OsStr::new("y"), S_IFREG | 0o600).unwrap();
        d.write(y, 0, b"yy").unwrap();
        d.remove(sub, OsStr::new("x"), false).unwrap();
        d.sync_all();
        let mut saved = HashMap::new();
        save(&d.durable, dir.path(), &mut saved).unwrap();
        assert!(!dir.path().join("sub/x").exists());
        assert_eq!(std::fs::read(dir.path().join("sub/y")).unwrap(), b"yy");
    }
}
