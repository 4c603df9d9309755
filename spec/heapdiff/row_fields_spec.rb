# frozen_string_literal: true

require "json"
require_relative "../support/fixtures"

# Heap#_row is an array for speed; its layout is defined once, in the extension, and
# exported as Heap::ROW_FIELDS. Each field is checked against the record's own JSON
# (the dump's truth), through both the raw row and Object's reader for it.
module RowFields
  # What the dump line itself says each field is (nil: not written on that line).
  TRUTH = {
    address_int: ->(r) { Integer(r["address"]) },
    type: ->(r) { r["type"] },
    file: ->(r) { r["file"] },
    line: ->(r) { r["line"] },
    method: ->(r) { r["method"] },
    generation: ->(r) { r["generation"] },
    memsize: ->(r) { r["memsize"] || 0 },
    bytesize_column: ->(r) { r["bytesize"] },
    length: ->(r) { r["length"] || r["size"] || r["ivars"] },
    subtype: ->(r) { r["struct"] || r["imemo_type"] },
    shape_id: ->(r) { r["shape_id"] }
  }.freeze

  # Object's reader for each field.
  READERS = {
    address_int: ->(o) { Integer(o.address) },
    type: :type.to_proc, class_name: :class_name.to_proc, file: :file.to_proc,
    line: :line.to_proc, method: :method_name.to_proc, generation: :generation.to_proc,
    memsize: :memsize.to_proc, bytesize_column: :bytesize.to_proc, length: :length.to_proc,
    subtype: :subtype.to_proc, flags: :flags.to_proc, shape_id: :shape_id.to_proc
  }.freeze
end

RSpec.describe "Heapdiff::Heap::ROW_FIELDS" do
  let(:fields) { Heapdiff::Heap::ROW_FIELDS }

  it "names each field of a row once, and Object has a reader for each" do
    heap = Heapdiff.load(Fixtures.dump("3.4"))
    expect(fields).to be_frozen
    expect(fields.uniq.size).to eq(heap._row(0).size)
    expect(RowFields::READERS.keys).to match_array(fields)
  end

  Fixtures::RUBIES.each do |ruby|
    it "puts each field where the readers look for it (Ruby #{ruby})" do
      path = Fixtures.dump(ruby)
      heap = Heapdiff.load(path)
      # One record of each kind that fills different fields.
      records = File.foreach(path).map { |l| JSON.parse(l) }.reject { |r| r["type"] == "ROOT" || r["type"] == "SHAPE" }
      samples = [
        records.find { |r| r["type"] == "STRING" && r["file"] && r["bytesize"] },
        records.find { |r| r["type"] == "ARRAY" && r["length"] },
        records.find { |r| r["type"] == "DATA" && r["struct"] },
        records.find { |r| r["type"] == "OBJECT" && r["shape_id"] }
      ].compact
      expect(samples.size).to be >= 3
      samples.each do |record|
        object = heap.at(record["address"])
        raw = fields.zip(heap._row(object.row)).to_h
        fields.each do |field|
          expect(RowFields::READERS.fetch(field).call(object)).to eq(raw[field]), "#{record["type"]} #{field}"
          next unless RowFields::TRUTH.key?(field)

          expect(raw[field]).to eq(RowFields::TRUTH[field].call(record)), "#{record["type"]} #{field} in the row"
        end
      end
    end
  end
end
