// The nghttp2 callbacks of a connection, from the static handlers of its class, for the gateway's
// two HTTP/2 sides: the front door (a server) and the upstream pool (a client).
#pragma once

#include <nghttp2/nghttp2.h>

#include <memory>

namespace crm::gateway {

// The session events a connection handles; a null handler is not asked for (a client learns of no
// new streams from its peer, so it has no on_begin_headers).
struct Http2Handlers {
  nghttp2_on_begin_headers_callback on_begin_headers = nullptr;
  nghttp2_on_header_callback on_header = nullptr;
  nghttp2_on_frame_recv_callback on_frame_recv = nullptr;
  nghttp2_on_data_chunk_recv_callback on_data_chunk_recv = nullptr;
  nghttp2_on_stream_close_callback on_stream_close = nullptr;
};

using Http2Callbacks =
    std::unique_ptr<nghttp2_session_callbacks, decltype(&nghttp2_session_callbacks_del)>;

// The callbacks to make a session with; the session copies them, so they may go once it is made.
inline Http2Callbacks NewHttp2Callbacks(const Http2Handlers& h) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, h.on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cb, h.on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, h.on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h.on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, h.on_stream_close);
  return Http2Callbacks(cb, &nghttp2_session_callbacks_del);
}

}  // namespace crm::gateway
