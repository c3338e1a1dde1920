//! Quiet event streams, held by one thread. A stream that has been quiet for a
//! whole heartbeat interval (it has just written a heartbeat and nothing else) is
//! handed to the idle thread with the listener it took before that heartbeat; its
//! own thread parks until the stream is given back. The idle thread writes every
//! held stream's heartbeats (the core's [`EventStream::beat`]), and gives a stream
//! back as soon as its job changes (its listener fires), its client leaves, or a
//! heartbeat cannot be written without waiting.
//!
//! Why: a thread per stream is this runtime's model, but waking 10,000 threads
//! for their heartbeats costs a futex wake-up and a context switch each, about
//! half of an idle stream's cost. The idle thread wakes once per
//! [`spout_core::subscriber::WAKE_SLICE`] for every heartbeat due in it, so idle
//! streams cost only their writes. A live stream is never held: it is handed over
//! only after a heartbeat, and given back at the first append.
//!
//! The idle thread waits on every held listener at once by polling each as a
//! future with a waker of its own, which records which stream is ready and
//! unparks the idle thread. It decides nothing: deadlines, heartbeats and their
//! coalescing are the core's.

use crate::clock;
use crate::serve::take;
use crate::stream::{Beat, EventStream};
use event_listener::EventListener;
use spout_core::subscriber::coalesce;
use spout_sys::driver::Shared;
use std::collections::{BTreeSet, HashMap};
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

/// The idle thread's mailbox, shared with stream threads and wakers.
#[derive(Default)]
pub struct Idler {
    inbox: Mutex<Inbox>,
    /// The idle thread, once it runs: streams are held only then.
    thread: OnceLock<Thread>,
}

/// What arrived for the idle thread since it last looked.
#[derive(Default)]
struct Inbox {
    /// Streams handed over.
    arrived: Vec<Held>,
    /// Keys of held streams whose listener fired.
    ready: Vec<u64>,
}

/// A stream the idle thread holds, and how to give it back.
struct Held {
    stream: Box<EventStream>,
    /// Taken before the stream's last look at its job: fires on any change since.
    listener: EventListener,
    /// The core's deadline for the next look (`None`: only a change wakes it).
    deadline: Option<Instant>,
    back: Arc<Back>,
}

/// Where a held stream is given back to its parked thread.
struct Back {
    stream: Mutex<Option<Box<EventStream>>>,
    thread: Thread,
}

/// The answer to [`Idler::hold`].
pub enum Given {
    /// The stream, given back: its job changed, its client left, or a write
    /// could not finish at once ([`EventStream`] knows which).
    Back(Box<EventStream>),
    /// No idle thread runs: the caller waits for the stream itself.
    Refused(Box<EventStream>, EventListener),
}

/// Wakes the idle thread for the held stream `key`.
struct Ready {
    key: u64,
    idler: Arc<Idler>,
}

impl Wake for Ready {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.idler.inbox().ready.push(self.key);
        if let Some(t) = self.idler.thread.get() {
            t.unpark();
        }
    }
}

impl Held {
    /// Gives the stream back to its thread.
    fn give_back(self) {
        *self
            .back
            .stream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(self.stream);
        self.back.thread.unpark();
    }
}

impl Idler {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands `stream` to the idle thread, with the `listener` it took before its
    /// last look at the job and the core's `deadline` for its next look, and
    /// parks the calling thread until the stream is given back.
    pub fn hold(
        &self,
        stream: Box<EventStream>,
        listener: EventListener,
        deadline: Instant,
    ) -> Given {
        let Some(idle) = self.thread.get() else {
            return Given::Refused(stream, listener);
        };
        let back = Arc::new(Back {
            stream: Mutex::new(None),
            thread: thread::current(),
        });
        self.inbox().arrived.push(Held {
            stream,
            listener,
            deadline: Some(deadline),
            back: back.clone(),
        });
        idle.unpark();
        loop {
            if let Some(stream) = take(&back.stream) {
                return Given::Back(stream);
            }
            // Spurious returns are possible: the loop looks again.
            thread::park();
        }
    }

    /// The idle thread's loop (it never ends): takes streams handed over, gives
    /// back those whose job changed, and beats those due, then sleeps until the
    /// next deadline or the next arrival.
    pub fn run(self: &Arc<Self>, shared: &Shared) {
        let _ = self.thread.set(thread::current());
        let mut held: HashMap<u64, (Option<Instant>, Held)> = HashMap::new();
        let mut due = BTreeSet::new();
        let mut next_key = 0u64;
        loop {
            let (arrived, ready) = {
                let mut inbox = self.inbox();
                (
                    std::mem::take(&mut inbox.arrived),
                    std::mem::take(&mut inbox.ready),
                )
            };
            // Keys are never reused: a key whose stream is gone is a stale wake.
            for key in ready {
                if let Some((at, h)) = held.remove(&key) {
                    if let Some(at) = at {
                        due.remove(&(at, key));
                    }
                    h.give_back();
                }
            }
            for h in arrived {
                self.keep(h, &mut next_key, &mut held, &mut due);
            }
            let now = clock::now();
            while let Some(&(at, key)) = due.first() {
                if at > now {
                    break;
                }
                due.pop_first();
                let Some((_, mut h)) = held.remove(&key) else {
                    continue;
                };
                match h.stream.beat(shared) {
                    Beat::Again(listener, deadline) => {
                        h.listener = listener;
                        h.deadline = deadline;
                        self.keep(h, &mut next_key, &mut held, &mut due);
                    }
                    Beat::Back => h.give_back(),
                }
            }
            match due.first() {
                Some(&(at, _)) => thread::park_timeout(at.saturating_duration_since(clock::now())),
                None => thread::park(),
            }
        }
    }

    /// Holds `h` under a new key: registers its listener's waker (or gives it
    /// back at once if the job already changed) and files its deadline, coalesced
    /// so that streams due in the same slice share one wake-up.
    fn keep(
        self: &Arc<Self>,
        mut h: Held,
        next_key: &mut u64,
        held: &mut HashMap<u64, (Option<Instant>, Held)>,
        due: &mut BTreeSet<(Instant, u64)>,
    ) {
        let key = *next_key;
        *next_key += 1;
        let waker = Waker::from(Arc::new(Ready {
            key,
            idler: self.clone(),
        }));
        if let Poll::Ready(()) = Pin::new(&mut h.listener).poll(&mut Context::from_waker(&waker)) {
            h.give_back();
            return;
        }
        let at = h.deadline.map(|d| coalesce(d, clock::epoch()));
        if let Some(at) = at {
            due.insert((at, key));
        }
        held.insert(key, (at, h));
    }
}
