//! The protobuf codec of merit's servers: tonic's prost codec, except that a request that is
//! no valid message is INVALID_ARGUMENT. gRPC's own table of status codes answers INTERNAL for
//! a request proto that does not parse; merit answers every kind of bad input as the caller's
//! fault, so that INTERNAL always means a fault of the server (issue 3: "bad input never yields
//! INTERNAL").

use prost::Message;
use std::marker::PhantomData;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// A [`tonic::codec::Codec`] encoding `T` and decoding `U` with prost.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    inner: ProstCodec<T, U>,
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec { inner: ProstCodec::default(), _pd: PhantomData }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> ProstEncoder<T> {
        self.inner.encoder()
    }

    fn decoder(&mut self) -> RequestDecoder<U> {
        RequestDecoder(self.inner.decoder())
    }
}

/// Decodes a request; bytes that are no such message are the caller's fault.
pub struct RequestDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(buf).map_err(|s| {
            if s.code() == tonic::Code::Internal {
                Status::invalid_argument(format!("the request is no valid protobuf message: {}", s.message()))
            } else {
                s
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
