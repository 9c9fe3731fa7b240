// WebP through libwebp, exactly as PIL 9.4's _webp.c uses it: the file goes to
// WebPAnimDecoder with its default options (RGBA output, fancy upsampling,
// no threads), for still images too, and the first frame it returns is the
// image; alpha is dropped, not composited (a fully transparent pixel keeps the
// colour stored for it; outside an animation's first frame the canvas is
// transparent black). Debian's PIL links the same libwebp, so lossy, lossless,
// alpha and animated files give PIL's pixels.
//
// Refusals are libwebp's, as in PIL: the demuxer refuses a file that is cut
// short (anywhere, even in a later animation frame) or malformed, the decoder
// a damaged bitstream. The canvas size is checked against the pixel limit
// before the decoder, which allocates two canvases up front, is created.

#include <string>

#include <webp/decode.h>
#include <webp/demux.h>

#include "image/codecs.hpp"

namespace pe::image::detail {
namespace {

struct Canvas {
  int64_t width = 0, height = 0;
};

Canvas read_canvas(const Source& in) {
  WebPData data{in.data, in.size};
  WebPDemuxer* demux = WebPDemux(&data);
  if (demux == nullptr) {
    // Tell a file cut short from a damaged one: the partial demuxer accepts the former.
    WebPDemuxState state = WEBP_DEMUX_PARSE_ERROR;
    WebPDemuxer* partial = WebPDemuxPartial(&data, &state);
    if (partial != nullptr) WebPDemuxDelete(partial);
    if (state == WEBP_DEMUX_PARSING_HEADER || state == WEBP_DEMUX_PARSED_HEADER) {
      truncated(in, "WebP", "before the end of its RIFF container");
    }
    corrupt(in, "corrupt WebP: libwebp's demuxer cannot parse it (PIL: \"could not create decoder object\")");
  }
  Canvas canvas;
  canvas.width = WebPDemuxGetI(demux, WEBP_FF_CANVAS_WIDTH);
  canvas.height = WebPDemuxGetI(demux, WEBP_FF_CANVAS_HEIGHT);
  WebPDemuxDelete(demux);
  return canvas;
}

struct AnimDecoder {
  WebPAnimDecoder* decoder = nullptr;
  ~AnimDecoder() {
    if (decoder != nullptr) WebPAnimDecoderDelete(decoder);
  }
};

}  // namespace

ImageInfo info_webp(const Source& in) {
  const Canvas canvas = read_canvas(in);
  return ImageInfo{"WebP", canvas.width, canvas.height};
}

Image decode_webp(const Source& in) {
  const Canvas canvas = read_canvas(in);
  check_size(in, "WebP", canvas.width, canvas.height);
  WebPData data{in.data, in.size};
  AnimDecoder anim;
  anim.decoder = WebPAnimDecoderNew(&data, nullptr);  // PIL passes no options: MODE_RGBA
  WebPAnimInfo info;
  if (anim.decoder == nullptr || !WebPAnimDecoderGetInfo(anim.decoder, &info)) {
    corrupt(in, "corrupt WebP: libwebp cannot create its decoder (PIL: \"could not create decoder object\")");
  }
  uint8_t* rgba = nullptr;
  int timestamp = 0;
  if (!WebPAnimDecoderGetNext(anim.decoder, &rgba, &timestamp) || rgba == nullptr) {
    corrupt(in, "corrupt WebP: libwebp cannot decode its first frame (PIL: \"failed to decode next frame\")");
  }
  Image image = new_image(in, info.canvas_width, info.canvas_height);
  const size_t pixels = static_cast<size_t>(info.canvas_width) * info.canvas_height;
  uint8_t* out = image.pixels.data();
  for (size_t i = 0; i < pixels; ++i, rgba += 4, out += 3) {
    out[0] = rgba[0];
    out[1] = rgba[1];
    out[2] = rgba[2];
  }
  return image;
}

}  // namespace pe::image::detail
