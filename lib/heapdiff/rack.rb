# frozen_string_literal: true

require_relative "capture/recorder"
require_relative "capture/watch"
require_relative "capture/work"

module Heapdiff
  # Rack middleware (Puma, or any Rack server) that counts the requests this process
  # serves, per route, into Heapdiff::Work: each snapshot's sidecar then says how many
  # requests of each route ran since the one before, and a trend can tell which route
  # makes a site grow (Trend::Site#growth_driver).
  #
  #   # config.ru
  #   require "heapdiff/rack"
  #   use Heapdiff::Rack                      # counts; snapshots come from elsewhere
  #   use Heapdiff::Rack, dir: "tmp/heapdiff", every: 600, signal: "WINCH"   # and records
  #
  # The route (#route) is Rails' controller#action when the router has set it, else
  # the method and the path with its ids collapsed: "GET /widgets/:id". At most
  # Work::MAX_LABELS routes are told apart; the rest are counted as "(other)", so that
  # a crawler cannot make the counts grow without bound.
  #
  # It never changes the response and never raises into the app: a request is counted
  # once the app has returned (or raised: its exception goes on unchanged), and a
  # failure to count is dropped.
  #
  # With Recorder options (+dir:+, +every:+, +keep:+, +signal:+, +fork:+, +gzip:+,
  # +logger:+, +on_snapshot:+, +after_fork:+) or +recorder:+, the middleware also
  # starts that recorder, in the process that serves the first request: each Puma
  # worker records on its own (in DIR/pid-PID when heapdiff was loaded before the
  # fork, see Recorder), and a master that serves nothing records nothing.
  class Rack
    # Path segments that are ids: numbers, UUIDs, and hex strings of 8 or more
    # characters with a digit among them (an ObjectId, a digest; not a word such as
    # "deadbeef"), each up to the next "/", "." or ";" (a format: "/widgets/7.json").
    ID = %r{(?<=/)(?:\d+|\h{8}-\h{4}-\h{4}-\h{4}-\h{12}|(?=\h*\d)\h{8,})(?=[/.;]|\z)}
    METHOD = /\A[A-Z]{1,20}\z/

    class << self
      # The route +env+ is a request of: "widgets#show" (Rails' path parameters),
      # "WidgetsController#show" (the controller instance, when only that is there),
      # else "GET /widgets/:id" (SCRIPT_NAME + PATH_INFO, ids collapsed as ID says; a
      # method that is not an HTTP token is "OTHER").
      # @param env [Hash] a Rack env
      # @return [String]
      # @raise [TypeError] when +env+ is not a Hash
      def route(env)
        raise TypeError, "heapdiff: a Rack env must be a Hash, got #{Arguments.kind(env)}" unless Hash === env

        rails_route(env) || "#{method_name(env["REQUEST_METHOD"])} #{collapse("#{env["SCRIPT_NAME"]}#{env["PATH_INFO"]}")}"
      end

      # +path+ with its id segments replaced by ":id".
      # @param path [String]
      # @return [String]
      # @raise [TypeError] when +path+ is not a String
      def collapse(path)
        raise TypeError, "heapdiff: a path must be a String, got #{Arguments.kind(path)}" unless String === path

        path = path.b
        return "/" if path.empty?

        path.gsub(ID, ":id")
      end

      private

      def rails_route(env)
        params = env["action_dispatch.request.path_parameters"]
        if Hash === params && (controller = params[:controller]) && (action = params[:action])
          return "#{controller}##{action}"
        end

        instance = env["action_controller.instance"]
        return nil unless instance.respond_to?(:action_name)

        "#{instance.class.name}##{instance.action_name}"
      end

      def method_name(method)
        String === method && METHOD.match?(method) ? method : "OTHER"
      end
    end

    # The Recorder it starts (from +recorder:+ or the options), or nil.
    # @return [Recorder, nil]
    attr_reader :recorder

    # @param app [#call] the Rack app
    # @param recorder [Recorder, nil] a recorder to start with the first request
    # @param watch [Integer, nil] watch one served request's env in this many
    #   (Heapdiff.watch, label "Rack env ROUTE"): an env should be garbage once its
    #   response is sent; nil (default): none
    # @param recorder_options [Hash] or the options of a new Recorder (+dir:+ at least;
    #   +rss_limit:+ works here too: the recorder's thread watches RSS)
    # @raise [ArgumentError] for a wrong Recorder option, or both +recorder:+ and options
    def initialize(app, recorder: nil, watch: nil, **recorder_options)
      raise ArgumentError, "heapdiff: give recorder: or Recorder options, not both" if recorder && recorder_options.any?
      unless watch.nil? || (Integer === watch && watch.positive?)
        raise ArgumentError, "heapdiff: watch: must be a positive Integer (one request in N) or nil"
      end

      @app = app
      @watch = watch
      @served = 0
      @recorder = recorder || (Recorder.new(**recorder_options) unless recorder_options.empty?)
      @start_lock = Mutex.new
      @started_in = nil
    end

    # Calls the app and returns its response, untouched; counts the request once the
    # app has returned or raised (its exception goes on unchanged).
    # @param env [Hash] the Rack env
    # @return [Array] the app's response
    def call(env)
      start_recorder if @recorder && @started_in != Process.pid
      response = @app.call(env)
      @watch ? watched(env, response) : response
    ensure
      count(env)
    end

    def inspect
      "#<Heapdiff::Rack app=#{@app.class} recorder=#{@recorder ? @recorder.dir : "none"}>"
    end

    private

    def count(env)
      Work.count(:requests, Rack.route(env))
    rescue StandardError
      nil
    end

    # The response, its body wrapped so that the env is watched once the server has
    # closed the body (the request is over then, not when #call returns: a streamed
    # body still uses the env). One request in @watch; the others go untouched.
    def watched(env, response)
      # Unsynchronised: a race between Puma's threads only shifts which request is
      # sampled.
      return response unless ((@served += 1) % @watch).zero? && response.is_a?(Array) && response.size == 3

      require "rack/body_proxy"
      status, headers, body = response
      [status, headers, ::Rack::BodyProxy.new(body) { Heapdiff.watch(env, "Rack env #{Rack.route(env)}") }]
    rescue StandardError, LoadError
      response
    end

    # Once per process: a recorder that its owner stopped stays stopped, and one that
    # cannot start (logged) is not tried again on every request.
    def start_recorder
      @start_lock.synchronize do
        next if @started_in == Process.pid

        @started_in = Process.pid
        @recorder.start
      end
    rescue StandardError => e
      recorder = @recorder
      @recorder = nil
      recorder.logger.error("heapdiff: the recorder did not start: #{e.class}: #{e.message}")
    end
  end
end
