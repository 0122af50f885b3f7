/// Go `text/tabwriter` output (minwidth 0, tabwidth 8, padding 2, padchar ' ', no flags) for tables of cells.
enum TabWriter {
    /// Renders rows: every cell but the last of a row is padded to its column block's widest cell + 2; the last is verbatim.
    ///
    /// Column widths are computed per block of consecutive rows that have that column, exactly as Go does;
    /// widths count Unicode scalars. Each row ends with "\n".
    static func render(_ rows: [[String]]) -> String {
        let cells: [[(text: String, width: Int)]] = rows.map { row in
            row.map { ($0, $0.unicodeScalars.count) }
        }
        var out = ""
        var widths: [Int] = []
        format(cells, 0, cells.count, &widths, &out)
        return out
    }

    private static let padding = 2

    /// Go's recursive `Writer.format` over lines [line0, line1) with the known widths of the columns to the left.
    private static func format(_ lines: [[(text: String, width: Int)]], _ start: Int, _ end: Int,
                               _ widths: inout [Int], _ out: inout String) {
        var line0 = start
        let column = widths.count
        var this = start
        while this < end {
            if column >= lines[this].count - 1 {
                this += 1
                continue
            }
            writeLines(lines, line0, this, widths, &out)
            line0 = this
            var width = 0
            while this < end && column < lines[this].count - 1 {
                width = max(width, lines[this][column].width + padding)
                this += 1
            }
            widths.append(width)
            format(lines, line0, this, &widths, &out)
            widths.removeLast()
            line0 = this
        }
        writeLines(lines, line0, end, widths, &out)
    }

    private static func writeLines(_ lines: [[(text: String, width: Int)]], _ start: Int, _ end: Int,
                                   _ widths: [Int], _ out: inout String) {
        guard start < end else { return }
        for i in start..<end {
            let line = lines[i]
            for (j, cell) in line.enumerated() {
                out += cell.text
                if j < widths.count && j < line.count - 1 {
                    out += String(repeating: " ", count: max(widths[j] - cell.width, 0))
                }
            }
            out += "\n"
        }
    }
}
