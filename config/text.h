// How the configuration shows a value it talks about: in error messages and in the summary of
// `payoutd check`, each stays on one line and short, whatever the file held.
#pragma once

#include <string>
#include <string_view>

namespace payoutd {

// A value as shown in an error: quoted, control characters escaped ("\x0a"), cut after 60
// characters ("...").
std::string Quote(std::string_view text);

// True when `text` holds a control character (below 0x20, or DEL): such a value would split a
// log line, a header or a message.
bool HasControlChars(std::string_view text);

}  // namespace payoutd
