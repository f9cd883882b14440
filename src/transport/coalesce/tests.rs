use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn coalesces_until_the_limit_or_a_flush_and_frees_the_buffer() {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let mut w = Coalesce::new(a, 16);
    w.write_all(b"hello ").await.expect("write");
    w.write_all(b"world").await.expect("write");
    // Below the limit and not flushed: nothing reached the peer yet.
    assert_eq!(w.buf.len(), 11);
    w.write_all(b", and more than sixteen")
        .await
        .expect("write");
    // The first two went out together when the third would have crossed the limit.
    let mut got = [0u8; 11];
    b.read_exact(&mut got).await.expect("read");
    assert_eq!(&got, b"hello world");
    let mut rest = [0u8; 23];
    b.read_exact(&mut rest).await.expect("read");
    assert_eq!(&rest, b", and more than sixteen");
    w.write_all(b"tail").await.expect("write");
    assert!(w.buf.capacity() >= 4);
    w.flush().await.expect("flush");
    assert_eq!(w.buf.capacity(), 0, "a drained buffer is freed");
    let mut tail = [0u8; 4];
    b.read_exact(&mut tail).await.expect("read");
    assert_eq!(&tail, b"tail");
}

#[tokio::test]
async fn backpressure_keeps_every_byte_in_order() {
    // A pipe that holds 64 bytes: most writes meet a full peer.
    let (a, mut b) = tokio::io::duplex(64);
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.expect("read");
        all
    });
    let mut w = Coalesce::new(a, 100);
    let mut sent = Vec::new();
    for i in 0..500u32 {
        let chunk = format!("<{i}>").repeat((i % 7 + 1) as usize);
        w.write_all(chunk.as_bytes()).await.expect("write");
        sent.extend_from_slice(chunk.as_bytes());
        if i % 50 == 0 {
            w.flush().await.expect("flush");
        }
    }
    w.shutdown().await.expect("shutdown");
    drop(w);
    assert_eq!(reader.await.expect("reader"), sent);
}

/// An unmasked server frame with `len` payload bytes.
fn wire(opcode: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match u8::try_from(len) {
        Ok(n) if n < 126 => f.push(n),
        _ => {
            f.push(126);
            f.extend_from_slice(&u16::try_from(len).expect("short frame").to_be_bytes());
        }
    }
    f.extend(std::iter::repeat_n(b'a', len));
    f
}

fn close_frame() -> Vec<u8> {
    let mut f = vec![0x88, 2];
    f.extend_from_slice(&4005u16.to_be_bytes());
    f
}

#[tokio::test]
async fn discarding_keeps_the_frame_in_progress_and_drops_the_rest_of_the_buffer() {
    use futures_util::FutureExt as _;
    // The peer takes 10 bytes and then stops reading.
    let (a, mut b) = tokio::io::duplex(10);
    let mut w = Coalesce::new(a, 1000);
    let frames: Vec<_> = (0..3).map(|_| wire(1, 200)).collect();
    for f in &frames {
        w.write_all(f).await.expect("write");
    }
    assert!(w.flush().now_or_never().is_none(), "the peer is full");
    assert_eq!(w.written, 10);
    w.discard_unsent();
    // The first frame is in progress and stays; the two behind it are gone.
    assert_eq!(w.buf.len(), frames[0].len());
    // tungstenite then hands over what it still held (dropped), and the close frame.
    w.write_all(&wire(1, 300)).await.expect("write");
    w.write_all(&close_frame()).await.expect("write");
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.expect("read");
        all
    });
    // After the close frame everything goes through again.
    w.write_all(&wire(10, 3)).await.expect("write");
    w.shutdown().await.expect("shutdown");
    drop(w);
    let mut expected = frames[0].clone();
    expected.extend(close_frame());
    expected.extend(wire(10, 3));
    assert_eq!(reader.await.expect("reader"), expected);
}

#[tokio::test]
async fn discarding_completes_a_frame_written_in_part_past_the_buffer() {
    let (a, mut b) = tokio::io::duplex(10);
    let mut w = Coalesce::new(a, 16);
    // At least `limit` bytes: written straight to the peer, which takes 10 of them.
    let big = wire(2, 300);
    let n = w.write(&big).await.expect("write");
    assert_eq!(n, 10);
    w.discard_unsent();
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        b.read_to_end(&mut all).await.expect("read");
        all
    });
    // tungstenite hands over the rest of the frame, then frames it queued, then the close.
    w.write_all(&big[n..]).await.expect("write");
    w.write_all(&wire(1, 5)).await.expect("write");
    w.write_all(&wire(1, 500)).await.expect("write");
    w.write_all(&close_frame()).await.expect("write");
    w.shutdown().await.expect("shutdown");
    drop(w);
    let mut expected = big;
    expected.extend(close_frame());
    assert_eq!(reader.await.expect("reader"), expected);
}

#[tokio::test]
async fn discarding_anywhere_leaves_whole_frames_then_the_close_frame() {
    use futures_util::FutureExt as _;
    let mut seed = 0x9e37_79b9_u32;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        usize::try_from(seed).expect("u32 fits") % below
    };
    for round in 0..200 {
        let (a, mut b) = tokio::io::duplex(1 + next(3000));
        let mut w = Coalesce::new(a, 1 + next(2000));
        let frames: Vec<_> = (0..40).map(|_| wire(1, next(1500))).collect();
        // As tungstenite: one frame at a time, its unwritten rest kept and handed over
        // again; a flush now and then. Stop where the peer (not reading) is full.
        let mut out = Vec::new();
        let mut queued = frames.iter();
        'feed: loop {
            if out.is_empty() {
                match queued.next() {
                    Some(f) => out.extend_from_slice(f),
                    None => break,
                }
            }
            while !out.is_empty() {
                match Pin::new(&mut w).write(&out).now_or_never() {
                    Some(n) => drop(out.drain(..n.expect("write"))),
                    None => break 'feed,
                }
            }
            if next(4) == 0 && w.flush().now_or_never().is_none() {
                break;
            }
        }
        w.discard_unsent();
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            b.read_to_end(&mut all).await.expect("read");
            all
        });
        w.write_all(&out).await.expect("write");
        for f in queued.take(3) {
            w.write_all(f).await.expect("write");
        }
        w.write_all(&close_frame()).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        let got = reader.await.expect("reader");
        let mut rest = &got[..];
        for f in &frames {
            match rest.strip_prefix(&f[..]) {
                Some(r) => rest = r,
                None => break,
            }
        }
        assert_eq!(
            rest,
            close_frame(),
            "round {round}: whole frames, then the close"
        );
    }
}

#[tokio::test]
async fn discarding_an_unstarted_buffer_drops_it_whole() {
    let (a, mut b) = tokio::io::duplex(1 << 16);
    let mut w = Coalesce::new(a, 1000);
    w.write_all(&wire(1, 100)).await.expect("write");
    w.discard_unsent();
    assert_eq!(w.buf.capacity(), 0, "nothing of it was written: freed");
    w.write_all(&close_frame()).await.expect("write");
    w.shutdown().await.expect("shutdown");
    drop(w);
    let mut all = Vec::new();
    b.read_to_end(&mut all).await.expect("read");
    assert_eq!(all, close_frame());
}

#[tokio::test]
async fn the_frame_crossing_the_limit_does_not_grow_the_buffer() {
    let (a, mut b) = tokio::io::duplex(1 << 20);
    let mut w = Coalesce::new(a, 1000);
    let payload = [b'x'; 100];
    w.push_text(&payload);
    let (ptr, capacity) = (w.buf.as_ptr(), w.buf.capacity());
    let mut frames = 1;
    while w.has_room() {
        w.push_text(&payload);
        frames += 1;
    }
    assert!(w.buf.len() > 1000, "the last frame crossed the limit");
    assert_eq!(
        (w.buf.as_ptr(), w.buf.capacity()),
        (ptr, capacity),
        "one allocation for the whole batch"
    );
    w.flush().await.expect("flush");
    let mut got = vec![0u8; frames * 102];
    b.read_exact(&mut got).await.expect("read");
    for frame in got.chunks(102) {
        assert_eq!(&frame[..2], &[0x81, 100]);
        assert_eq!(&frame[2..], &payload);
    }
}
